"""Timestep embedding."""
from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_embedding(timesteps: Tensor, dim: int) -> Tensor:
    """[B] timesteps -> [B, dim] float32 features: cosines first, then sines.

    Always float32: in half precision, timesteps near 1000 times high frequencies lose the phase.
    Frequencies are 10000^(-i / (dim/2)), computed with the same operations as the original so the
    fp32 result is bit-identical; an odd `dim` is padded with one zero column.
    """
    half = dim // 2
    timesteps = timesteps.float()
    exponents = torch.arange(half, device=timesteps.device, dtype=torch.float32).div(half)
    angles = torch.outer(timesteps, torch.pow(10000, -exponents))
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=1)
    return embedding
