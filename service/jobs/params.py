"""Render parameters a client may set (`params` of POST /animate). Unknown keys are rejected.

Defaults are those of the original UniAnimate long-video inference. The worker reads the
same model back from the job record, so what the API accepted is exactly what gets rendered.
"""
from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEED_MAX = 2**32 - 1


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    seed: int | None = Field(None, ge=0, le=SEED_MAX,
                             description="random seed; chosen by the server and recorded when omitted")
    steps: int = Field(30, ge=1, le=200, description="DDIM denoising steps")
    guidance_scale: float = Field(2.5, ge=0.0, le=20.0, description="classifier-free guidance scale")
    height: int | None = Field(None, ge=64, le=2048, description="output height in pixels, a multiple of 64; "
                               "default: the reference image's aspect ratio within 768x512 (width likewise)")
    width: int | None = Field(None, ge=64, le=2048, description="output width in pixels, a multiple of 64")
    fps: float | None = Field(None, gt=0, le=120, description="output frame rate; default: source rate "
                              "divided by frame_interval")
    frame_interval: int | None = Field(None, ge=1, le=60,
                                       description="use every n-th frame of the pose source")
    max_duration_s: float | None = Field(None, gt=0, le=3600, description="cut the output at this length")
    segment_frames: int = Field(32, ge=2, le=128, description="frames generated per segment")
    long_video_mode: Literal["chain", "window"] = Field(
        "chain", description="chain: first-frame chaining of segments; window: sliding-window sampler")
    align_pose: bool = Field(True, description="align the driving poses to the reference pose")
    # Pixel keypoints that do not state their canvas (OpenPose writes none): aligned poses do not need
    # it; with align_pose false it says where on the frame the poses are.
    pose_canvas_width: int | None = Field(None, ge=1, le=8192, description="pixel width of the "
                                          "pose_keypoints coordinates, when the file does not say")
    pose_canvas_height: int | None = Field(None, ge=1, le=8192, description="pixel height of the "
                                           "pose_keypoints coordinates, when the file does not say")
    noise_prior_t: int = Field(939, ge=0, le=999, description="timestep of the reference noise prior")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor (lower = better quality)")

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_64(cls, value: int | None) -> int | None:
        # the VAE divides by 8 and the UNet downsamples the latent 3 times more
        if value is not None and value % 64:
            raise ValueError(f"must be a multiple of 64 (got {value}; nearest: {round(value / 64) * 64 or 64})")
        return value

    @model_validator(mode="after")
    def _whole_canvas(self) -> RenderParams:
        if (self.pose_canvas_width is None) != (self.pose_canvas_height is None):
            raise ValueError("give both pose_canvas_width and pose_canvas_height, or neither")
        return self

    @property
    def pose_canvas(self) -> tuple[int, int] | None:
        return None if self.pose_canvas_width is None else (self.pose_canvas_width, self.pose_canvas_height)

    def with_seed(self) -> RenderParams:
        """These params with a concrete seed, so the job record says how to reproduce it."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(SEED_MAX + 1)})


# How a request gives what a keypoint file left out, for messages in the API's words (the command
# line says the same with its flags: cli/hints.py).
HOW_TO_GIVE = {
    ("canvas", "pose_keypoints"): "set params.pose_canvas_width and params.pose_canvas_height (the pixel size of "
                                  "the video the poses came from), or add canvas_width and canvas_height to the file",
    ("canvas", "reference_keypoints"): "add canvas_width and canvas_height (the reference photo's pixel size) to "
                                       "the file",
    ("fps", "pose_keypoints"): 'set params.fps, or add "fps" to the file ({"fps": 30, "frames": [...]})',
}


def in_api_words(field: str, what: str, detail: str) -> str:
    """`field: detail: how to give it` for a missing "canvas" or "fps" of a keypoint file."""
    return f"{field}: {detail}: {HOW_TO_GIVE[what, field]}"
