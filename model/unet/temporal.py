"""Temporal mixing: the blocks that let frames exchange information at every pixel.

The UNet keeps frames folded into the batch ([B*F, C, H, W]) and unfolds them to video layout
([B, C, F, H, W]) only around temporal layers. Every temporal block kind subclasses `TemporalBlock`
and is built by `make_temporal_block`, so a new kind (e.g. a state-space model) plugs in here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from model.config import UNetConfig
from model.unet.transformer import BasicTransformerBlock


def to_video(x: Tensor, num_frames: int) -> Tensor:
    """[B*F, C, H, W] -> [B, C, F, H, W] (a view)."""
    return x.unflatten(0, (-1, num_frames)).transpose(1, 2)


def to_frames(x: Tensor) -> Tensor:
    """[B, C, F, H, W] -> [B*F, C, H, W]."""
    return x.transpose(1, 2).flatten(0, 1)


class TemporalBlock(nn.Module):
    """Contract of a temporal block: forward(x [B, C, F, H, W]) -> [B, C, F, H, W]."""


class TemporalTransformer(TemporalBlock):
    """Self-attention over the frames of each pixel, independently per pixel.

    The block ignores the text/image context (the original builds it self-attention only). Its
    in/out projections are stored as 1x1 `Conv1d` weights, as in the checkpoint, and applied as the
    equivalent linear maps on channel-last tokens, which avoids two layout copies.
    """

    def __init__(self, channels: int, heads: int, head_dim: int):
        super().__init__()
        inner_dim = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv1d(channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner_dim, heads, head_dim)])
        self.proj_out = nn.Conv1d(inner_dim, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, frames, height, width = x.shape
        tokens = self.norm(x).permute(0, 3, 4, 2, 1).reshape(batch * height * width, frames, channels)
        tokens = F.linear(tokens, self.proj_in.weight.squeeze(-1), self.proj_in.bias)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = F.linear(tokens, self.proj_out.weight.squeeze(-1), self.proj_out.bias)
        return x + tokens.unflatten(0, (batch, height, width)).permute(0, 4, 3, 1, 2)


def make_temporal_block(config: UNetConfig, channels: int, heads: int, head_dim: int) -> TemporalBlock:
    """The temporal block of kind `config.temporal` for a feature map of `channels` channels.

    `heads` and `head_dim` are the attention geometry the released checkpoint was trained with at
    this position; kinds without attention may ignore them.
    """
    if config.temporal == "transformer":
        return TemporalTransformer(channels, heads, head_dim)
    if config.temporal == "mamba":
        # deferred: temporal_mamba subclasses TemporalBlock from this module
        from model.unet.temporal_mamba import TemporalMamba

        return TemporalMamba(channels, inner_dim=heads * head_dim)
    raise ValueError(f"unknown temporal block kind {config.temporal!r}")
