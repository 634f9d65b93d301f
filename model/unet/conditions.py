"""Encoders that turn the pose / first-frame / reference conditions into features on the latent grid.

Each condition goes through a small conv stack (per frame) and then a one-layer transformer that
attends across the frames of each latent pixel (`FrameAdapter`).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from model.unet.attention import FeedForward, FusedQKVAttention
from model.unet.temporal import to_frames, to_video

# The reference latent has the VAE's 4 channels whatever the UNet's in_dim (hard-coded in the original).
REFERENCE_LATENT_CHANNELS = 4


class PixelConditionEncoder(nn.Sequential):
    """[B, 3, F, H, W] pixels in [0, 1] -> [B, out_channels, F, h, w] on the latent grid (h = H / 8).

    After the first conv the features are average-pooled to 4x the latent size, then two stride-2
    convs reach the latent size. The original pools to half its configured pixel resolution, which
    is the same size when the latent is 1/8 of that resolution; taking it from the latent lets one
    model run at any resolution. Index 2 is the original's pooling slot, kept empty so that the
    conv weights keep their checkpoint indices 0, 3 and 5.
    """

    def __init__(self, out_channels: int, hidden_channels: int):
        super().__init__(
            nn.Conv2d(3, hidden_channels, 3, padding=1),
            nn.SiLU(),
            nn.Identity(),
            nn.Conv2d(hidden_channels, hidden_channels, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden_channels, out_channels, 3, stride=2, padding=1),
        )

    def forward(self, video: Tensor, latent_size: tuple[int, int]) -> Tensor:
        conv_in, act_in, _, conv_down, act_down, conv_out = self
        x = act_in(conv_in(to_frames(video)))
        x = F.adaptive_avg_pool2d(x, (4 * latent_size[0], 4 * latent_size[1]))
        x = conv_out(act_down(conv_down(x)))
        return to_video(x, video.shape[2])


def reference_latent_encoder(out_channels: int, hidden_channels: int) -> nn.Sequential:
    """[B, 4, h, w] reference latent -> [B, out_channels, h, w]; three 3x3 convs at full latent size."""
    return nn.Sequential(
        nn.Conv2d(REFERENCE_LATENT_CHANNELS, hidden_channels, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(hidden_channels, out_channels, 3, padding=1),
    )


class PreNormResidual(nn.Module):
    """x + fn(LayerNorm(x))."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x)) + x


class FrameAdapter(nn.Module):
    """Attention across frames at each pixel of condition features. x: [B, C, F, h, w] -> same shape.

    Per layer: pre-norm 2-head self-attention (head width = C) with a residual, then a GELU MLP
    with a residual but no norm, as in the original `Transformer_v2`.
    """

    def __init__(self, dim: int, depth: int = 1, dropout: float = 0.05):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                PreNormResidual(dim, FusedQKVAttention(dim, heads=2, head_dim=dim, dropout=dropout)),
                FeedForward(dim, dropout=dropout),
            ])
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, frames, height, width = x.shape
        tokens = x.permute(0, 3, 4, 2, 1).reshape(batch * height * width, frames, channels)
        for attention, feed_forward in self.layers:
            tokens = attention(tokens)
            tokens = feed_forward(tokens) + tokens
        return tokens.unflatten(0, (batch, height, width)).permute(0, 4, 3, 1, 2)
