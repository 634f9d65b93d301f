"""Batched classifier-free guidance in the UNet: unconditional rows skip the condition encoders,
and one call gives what the two calls of guidance give."""
from __future__ import annotations

import pytest
import torch

from model.config import UNetConfig
from model.pipeline import UniAnimatePipeline, default_batch_guidance
from model.unet import UniAnimateUNet

FRAMES, PIXELS = 3, (48, 32)
ENCODERS = ("pre_image_condition", "local_image_embedding", "dwpose_embedding", "randomref_embedding2",
            "randomref_pose2_embedding")


@pytest.fixture(scope="module")
def model(reference):
    data = torch.load(reference / "fixtures/unet_tiny.pt", weights_only=True)
    unet = UniAnimateUNet(UNetConfig.tiny()).eval()
    unet.load_state_dict(data["state_dict"], strict=True)
    unet.set_zero_y(data["inputs"]["zero_y"])
    return unet


def conditions(rows: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    latent = (PIXELS[0] // 8, PIXELS[1] // 8)
    return {
        "image": torch.randn(rows, 1, 1024, generator=g),
        "local_image": torch.rand(rows, 3, FRAMES, *PIXELS, generator=g),
        "dwpose": torch.rand(rows, 3, FRAMES + 1, *PIXELS, generator=g),
        "randomref": torch.randn(rows, 4, FRAMES, *latent, generator=g),
    }


def rows_seen(model: UniAnimateUNet) -> tuple[dict[str, int], list]:
    """Forward hooks that add up the batch rows each condition encoder computes."""
    seen = dict.fromkeys(ENCODERS, 0)

    def hook(name):
        return lambda module, args, output: seen.__setitem__(name, seen[name] + args[0].shape[0])

    return seen, [getattr(model, name).register_forward_hook(hook(name)) for name in ENCODERS]


@torch.no_grad()
@pytest.mark.parametrize("mask", [[False, True], [True, False, False, True], [True, True]])
def test_unconditional_rows_run_no_condition_encoder_and_match_single_calls(model, mask):
    rows = len(mask)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, 4, FRAMES, PIXELS[0] // 8, PIXELS[1] // 8, generator=g)
    t = torch.tensor([999, 500, 10, 700][:rows])
    cond = conditions(rows, seed=2)
    seen, hooks = rows_seen(model)
    try:
        together = model(x, t, **cond, unconditional=torch.tensor(mask))
    finally:
        for handle in hooks:
            handle.remove()
    assert seen == dict.fromkeys(ENCODERS, mask.count(False))  # only the conditional rows are encoded
    for row, unconditional in enumerate(mask):
        given = {} if unconditional else {k: v[row:row + 1] for k, v in cond.items()}
        alone = model(x[row:row + 1], t[row:row + 1], **given)
        torch.testing.assert_close(together[row:row + 1], alone, atol=1e-5, rtol=1e-5)


def test_batched_guidance_is_the_default_on_cuda_only():
    assert default_batch_guidance(torch.device("cuda", 1)) and default_batch_guidance(torch.device("cuda"))
    assert not default_batch_guidance(torch.device("cpu"))
    assert UniAnimatePipeline.tiny(seed=0).batch_guidance is False
