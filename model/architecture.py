"""Which network sizes a pipeline is built with: the released model, or the tiny untrained one."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from model.clip import TINY_CLIP, VIT_H_14, ClipSpec
from model.config import UNetConfig
from model.vae import SD21_DDCONFIG, TINY_DDCONFIG


@dataclass(frozen=True)
class Architecture:
    unet: UNetConfig
    vae_ddconfig: Mapping = field(default_factory=lambda: dict(SD21_DDCONFIG))
    clip: ClipSpec = VIT_H_14

    @classmethod
    def released(cls) -> Architecture:
        """The published UniAnimate UNet, the SD 2.1 VAE and OpenCLIP ViT-H/14."""
        return cls(UNetConfig.released(), dict(SD21_DDCONFIG), VIT_H_14)

    @classmethod
    def tiny(cls) -> Architecture:
        """Small widths, same structure: for tests and the demo without weights."""
        return cls(UNetConfig.tiny(), dict(TINY_DDCONFIG), TINY_CLIP)

    def with_temporal(self, temporal: str) -> Architecture:
        return replace(self, unet=replace(self.unet, temporal=temporal))

    @property
    def latent_scale(self) -> int:
        """Pixels per latent cell: the VAE halves the size at every level but the last."""
        return 2 ** (len(self.vae_ddconfig["ch_mult"]) - 1)

    @property
    def size_multiple(self) -> int:
        """Frame sides must be multiples of this: the VAE's scale times the UNet's downsampling."""
        return self.latent_scale * 2 ** (len(self.unet.dim_mult) - 1)
