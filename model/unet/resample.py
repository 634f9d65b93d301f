"""Resolution changes between UNet levels."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Downsample(nn.Module):
    """Halves height and width with a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Doubles height and width (nearest neighbour), then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
