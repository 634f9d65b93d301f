"""Residual blocks of the UNet: a time-conditioned 2-D residual block followed by a temporal conv stack."""
from __future__ import annotations

from torch import Tensor, nn

from model.unet.temporal import to_frames, to_video


def _norm_act_conv3d(channels: int, dropout: float | None) -> nn.Sequential:
    """GroupNorm, SiLU, [Dropout], then a conv over 3 neighbouring frames only (kernel (3, 1, 1))."""
    layers: list[nn.Module] = [nn.GroupNorm(32, channels), nn.SiLU()]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))
    return nn.Sequential(*layers)


class TemporalConvBlock(nn.Module):
    """Four temporal conv stages with a residual connection. x: [B, C, F, H, W]."""

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()
        self.conv1 = _norm_act_conv3d(channels, dropout=None)
        self.conv2 = _norm_act_conv3d(channels, dropout)
        self.conv3 = _norm_act_conv3d(channels, dropout)
        self.conv4 = _norm_act_conv3d(channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between, plus a skip path.

    x: [B*F, C, H, W] (frames folded into the batch), emb: [B*F, embed_dim].
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            nn.GroupNorm(32, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(32, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)
        # The attribute name carries the original's typo: it is the checkpoint key.
        self.temopral_conv = TemporalConvBlock(out_channels)

    def forward(self, x: Tensor, emb: Tensor, num_frames: int) -> Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        return to_frames(self.temopral_conv(to_video(h, num_frames)))
