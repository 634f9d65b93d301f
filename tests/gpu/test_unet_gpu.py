"""Released-size UNet on CUDA with random weights: the production shape in fp16, checked against fp32."""
from __future__ import annotations

import pytest
import torch

from model.config import UNetConfig
from model.unet import UniAnimateUNet
from model.unet.examples import example_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

FRAMES, HEIGHT, WIDTH = 32, 768, 512  # x [1, 4, 32, 96, 64], dwpose [1, 3, 33, 768, 512]


@torch.no_grad()
def test_released_size_fp16_forward_matches_fp32():
    config = UNetConfig.released()
    torch.manual_seed(0)
    model = UniAnimateUNet(config).eval().cuda()
    generator = torch.Generator().manual_seed(0)
    model.set_zero_y(torch.randn(1, 77, config.context_dim, generator=generator))
    inputs = {k: v.cuda() for k, v in example_inputs(config, FRAMES, HEIGHT, WIDTH, generator=generator).items()}
    assert inputs["x"].shape == (1, 4, FRAMES, HEIGHT // 8, WIDTH // 8)
    assert inputs["dwpose"].shape == (1, 3, FRAMES + 1, HEIGHT, WIDTH)

    reference = model(**inputs).float()
    output = model.half()(**inputs)

    assert output.shape == inputs["x"].shape and output.dtype == torch.float16
    assert torch.isfinite(output).all()
    scale = reference.abs().max().item()
    assert scale > 0
    assert (output.float() - reference).abs().max().item() < 0.02 * scale
