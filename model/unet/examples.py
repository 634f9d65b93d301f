"""Random UNet inputs of the right shapes, for benchmarks and smoke tests of untrained models."""
from __future__ import annotations

import torch
from torch import Tensor

from model.config import UNetConfig

LATENT_SCALE = 8  # VAE downsampling factor: pixels per latent cell


def example_inputs(
    config: UNetConfig,
    frames: int,
    height: int,
    width: int,
    *,
    batch: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Keyword arguments for `UniAnimateUNet.forward` with every condition, for `height`x`width` pixels.

    Built on the CPU in float32 (so the same generator gives the same values everywhere); move them
    with `{k: v.to(device) for k, v in ...}`.
    """
    if height % LATENT_SCALE or width % LATENT_SCALE:
        raise ValueError(f"height and width must be multiples of {LATENT_SCALE} pixels, got {height}x{width}")
    latent = (height // LATENT_SCALE, width // LATENT_SCALE)
    return {
        "x": torch.randn(batch, config.in_dim, frames, *latent, generator=generator),
        "t": torch.randint(0, 1000, (batch,), generator=generator),
        "image": torch.randn(batch, 1, config.context_dim, generator=generator),
        "local_image": torch.rand(batch, 3, frames, height, width, generator=generator),
        "dwpose": torch.rand(batch, 3, frames + 1, height, width, generator=generator),
        "randomref": torch.randn(batch, 4, frames, *latent, generator=generator),
    }
