"""Render parameters a client may set (`params` of POST /animate). Unknown keys are rejected.

Defaults are those of the original UniAnimate long-video inference. The worker reads the
same model back from the job record, so what the API accepted is exactly what gets rendered.
"""
from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_MAX = 2**32 - 1


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    seed: int | None = Field(None, ge=0, le=SEED_MAX,
                             description="random seed; chosen by the server and recorded when omitted")
    steps: int = Field(30, ge=1, le=200, description="DDIM denoising steps")
    guidance_scale: float = Field(2.5, ge=0.0, le=20.0, description="classifier-free guidance scale")
    height: int = Field(768, ge=64, le=2048, description="output height in pixels, a multiple of 64")
    width: int = Field(512, ge=64, le=2048, description="output width in pixels, a multiple of 64")
    fps: float | None = Field(None, gt=0, le=120, description="output frame rate; default: source rate "
                              "divided by frame_interval")
    frame_interval: int | None = Field(None, ge=1, le=60,
                                       description="use every n-th frame of the pose source")
    max_duration_s: float | None = Field(None, gt=0, le=3600, description="cut the output at this length")
    segment_frames: int = Field(32, ge=2, le=128, description="frames generated per segment")
    long_video_mode: Literal["chain", "window"] = Field(
        "chain", description="chain: first-frame chaining of segments; window: sliding-window sampler")
    align_pose: bool = Field(True, description="align the driving poses to the reference pose")
    noise_prior_t: int = Field(939, ge=0, le=999, description="timestep of the reference noise prior")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor (lower = better quality)")

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_64(cls, value: int) -> int:
        # the VAE divides by 8 and the UNet downsamples the latent 3 times more
        if value % 64:
            raise ValueError(f"must be a multiple of 64 (got {value}; nearest: {round(value / 64) * 64 or 64})")
        return value

    def with_seed(self) -> RenderParams:
        """These params with a concrete seed, so the job record says how to reproduce it."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(SEED_MAX + 1)})
