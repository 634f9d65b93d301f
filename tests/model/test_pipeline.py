"""The single-segment pipeline: tiny random weights end to end, and loading released-format files."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.architecture import Architecture
from model.checkpoints import CheckpointError
from model.clip import TINY_CLIP
from model.config import UNetConfig
from model.errors import RenderCancelled
from model.pipeline import UNTRAINED_LABEL, UniAnimatePipeline
from model.unet.unet import UniAnimateUNet
from tests.model.test_clip import open_clip_state_dict, save_pretrained_clip

SIZE = 64
STEPS = 2


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    ref_pose = rng.integers(0, 256, (120, 80, 3), dtype=np.uint8)
    poses = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    return image, ref_pose, poses


@pytest.fixture(scope="module")
def ref(pipeline, inputs):
    image, ref_pose, _ = inputs
    return pipeline.prepare_reference(image, ref_pose, SIZE, SIZE)


def render(pipeline, ref, poses, first_frame=None, seed=1, **kwargs):
    return pipeline.render_segment(ref, poses, first_frame, seed=seed, steps=STEPS, guidance_scale=2.5,
                                   noise_prior_t=939, **kwargs)


@pytest.fixture(scope="module")
def frames(pipeline, ref, inputs):
    return render(pipeline, ref, inputs[2])


def test_tiny_model_renders_frames_and_is_labelled_untrained(pipeline, frames, inputs):
    assert frames.shape == inputs[2].shape and frames.dtype == np.uint8
    assert frames.std() > 0  # not a blank video
    assert pipeline.untrained and pipeline.label == UNTRAINED_LABEL


def test_same_seed_same_frames_other_seed_other_frames(pipeline, ref, inputs, frames):
    assert np.array_equal(render(pipeline, ref, inputs[2]), frames)
    assert not np.array_equal(render(pipeline, ref, inputs[2], seed=2), frames)


def test_first_frame_condition_reaches_the_model(pipeline, ref, inputs, frames):
    chained = render(pipeline, ref, inputs[2], first_frame=frames[-1])
    assert not np.array_equal(chained, frames)


def test_poses_change_the_output(pipeline, ref, inputs, frames):
    assert not np.array_equal(render(pipeline, ref, inputs[2][::-1].copy()), frames)


def test_progress_counts_every_visited_step(pipeline, ref, inputs):
    calls = []
    render(pipeline, ref, inputs[2], progress=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_cancellation_stops_within_one_step(pipeline, ref, inputs):
    steps = []

    def cancel_after_first_step() -> bool:
        return len(steps) >= 1

    with pytest.raises(RenderCancelled):
        render(pipeline, ref, inputs[2], progress=lambda done, total: steps.append(done),
               should_cancel=cancel_after_first_step)
    assert steps == [1]


def test_window_mode_yields_every_frame(pipeline, ref, inputs):
    poses = np.concatenate([inputs[2], inputs[2]])
    frames = list(pipeline.render_window(ref, poses, seed=1, steps=STEPS, guidance_scale=2.5,
                                         noise_prior_t=939, context_size=4, context_overlap=1,
                                         context_batch_size=2))
    assert len(frames) == len(poses) and frames[0].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize("size", [(60, 64), (64, 0)])
def test_frame_size_must_fit_the_network(pipeline, inputs, size):
    with pytest.raises(ValueError, match="multiples of"):
        pipeline.prepare_reference(inputs[0], inputs[1], *size)


def test_pose_size_must_match_the_ref(pipeline, ref):
    with pytest.raises(ValueError, match="poses must be uint8"):
        render(pipeline, ref, np.zeros((2, 32, 32, 3), dtype=np.uint8))


# ---- loading files in the released formats ------------------------------------------------------


def write_released_files(directory, reference_dir, temporal: str = "transformer") -> Architecture:
    """A checkpoint directory with the published file names and key layouts, at tiny sizes."""
    vae_fixture = torch.load(reference_dir / "fixtures" / "vae_tiny.pt", weights_only=True)
    arch = Architecture(unet=replace(UNetConfig.tiny(), temporal=temporal),
                        vae_ddconfig=vae_fixture["config"]["kwargs"]["ddconfig"], clip=TINY_CLIP)
    torch.manual_seed(3)
    torch.save({"state_dict": UniAnimateUNet(arch.unet).state_dict(), "step": 223000},
               directory / "unianimate_16f_32f_non_ema_223000.pth")
    sd21 = {f"first_stage_model.{k}": v for k, v in vae_fixture["state_dict"].items()}
    sd21["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(1)  # the SD UNet, unused
    torch.save({"state_dict": sd21}, directory / "v2-1_512-ema-pruned.ckpt")
    torch.save(open_clip_state_dict(TINY_CLIP), directory / "open_clip_pytorch_model.bin")
    return arch


@pytest.mark.parametrize("temporal", ["transformer", "mamba"])
def test_released_file_formats_load_and_render(tmp_path, reference, inputs, temporal):
    arch = write_released_files(tmp_path, reference, temporal)
    pipeline = UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32,
                                                      cache_dir=tmp_path / "cache", architecture=arch)
    assert not pipeline.untrained
    assert pipeline.label.startswith("unianimate_16f_32f_non_ema_223000 sha256:")
    ref = pipeline.prepare_reference(inputs[0], inputs[1], 16, 16)
    frames = pipeline.render_segment(ref, inputs[2][:, :16, :16].copy(), None, seed=0, steps=STEPS,
                                     guidance_scale=2.5, noise_prior_t=939)
    assert frames.shape == (4, 16, 16, 3)
    # the cache now holds converted weights and zero_y, and a second load reads them
    assert any((tmp_path / "cache").glob("*.safetensors"))
    again = UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32,
                                                   cache_dir=tmp_path / "cache", architecture=arch)
    assert np.array_equal(again.render_segment(ref, inputs[2][:, :16, :16].copy(), None, seed=0, steps=STEPS,
                                               guidance_scale=2.5, noise_prior_t=939), frames)


def test_a_converted_transformers_clip_directory_replaces_the_open_clip_file(tmp_path, reference, inputs):
    arch = write_released_files(tmp_path, reference)
    released = UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32, architecture=arch)
    save_pretrained_clip(torch.load(tmp_path / "open_clip_pytorch_model.bin", weights_only=True), TINY_CLIP,
                         tmp_path / "clip")
    (tmp_path / "open_clip_pytorch_model.bin").unlink()
    converted = UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32,
                                                       architecture=arch)
    embeddings = [p.prepare_reference(inputs[0], inputs[1], 16, 16).image_embedding for p in (released, converted)]
    torch.testing.assert_close(embeddings[1], embeddings[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(converted.unet.zero_y, released.unet.zero_y, atol=1e-5, rtol=1e-5)


def test_missing_clip_names_both_accepted_forms(tmp_path, reference):
    write_released_files(tmp_path, reference)
    (tmp_path / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match=r"open_clip_pytorch_model.bin .*clip/"):
        UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu")


def test_a_mamba_checkpoint_is_recognised_by_its_keys(tmp_path, reference):
    """No setting says "mamba": the loader reads it off the keys, as the worker and the CLI rely on."""
    arch = write_released_files(tmp_path, reference, "mamba")
    unet_file = tmp_path / "unianimate_16f_32f_non_ema_223000.pth"
    saved = torch.load(unet_file, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key, value in saved["state_dict"].items():  # every temporal Mamba block non-trivial (its proj_out is 0)
        if ".layers." in key or (".proj_out." in key and value.abs().sum() == 0):
            saved["state_dict"][key] = value + 0.1 * torch.randn(value.shape, generator=generator)
    torch.save(saved, unet_file)
    as_released = replace(arch, unet=replace(arch.unet, temporal="transformer"))
    pipeline = UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32,
                                                      architecture=as_released)
    assert pipeline.unet.config.temporal == "mamba" and pipeline.architecture.unet.temporal == "mamba"
    expected = UniAnimateUNet(arch.unet).eval()
    expected.load_state_dict(saved["state_dict"], strict=True)
    expected.set_zero_y(pipeline.unet.zero_y)
    x = torch.randn(1, 4, 3, 8, 8, generator=generator)  # not 2x2: GroupNorm over 4 pixels amplifies rounding
    t = torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(pipeline.unet(x, t), expected(x, t), atol=1e-4, rtol=1e-4)
        untouched = UniAnimateUNet(arch.unet).eval()
        untouched.load_state_dict(torch.load(unet_file, weights_only=True)["state_dict"])
        untouched.set_zero_y(pipeline.unet.zero_y)
        for block in untouched.modules():  # the same weights with the Mamba blocks reset to identities
            if type(block).__name__ == "TemporalMamba":
                torch.nn.init.zeros_(block.proj_out.weight)
                torch.nn.init.zeros_(block.proj_out.bias)
        assert not torch.allclose(untouched(x, t), expected(x, t))


def test_a_unet_file_of_another_model_is_named(tmp_path, reference):
    write_released_files(tmp_path, reference)
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "unianimate_16f_32f_non_ema_223000.pth")
    with pytest.raises(CheckpointError, match="not a UniAnimate UNet checkpoint"):
        UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu")


def test_missing_file_is_named(tmp_path, reference):
    write_released_files(tmp_path, reference)
    (tmp_path / "v2-1_512-ema-pruned.ckpt").unlink()
    with pytest.raises(CheckpointError, match="v2-1_512-ema-pruned.ckpt"):
        UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu")


def test_wrong_unet_weights_name_the_keys(tmp_path, reference):
    arch = write_released_files(tmp_path, reference)
    torch.save({"time_embed.0.weight": torch.zeros(3)}, tmp_path / "unianimate_16f_32f_non_ema_223000.pth")
    with pytest.raises(CheckpointError, match="time_embed.0.weight"):
        UniAnimatePipeline.from_checkpoint_dir(tmp_path, device="cpu", dtype=torch.float32, architecture=arch)
