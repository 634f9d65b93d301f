"""What the long-video renderer needs from a single-segment model.

Anything that implements `SegmentRenderer` can be chained into a video of any length: the
UniAnimate pipeline (tiny or released weights) implements it, and so do the test doubles.
Frames cross this boundary as uint8 RGB arrays, so that a finished segment can be stored,
reloaded and fed back as the next condition without any loss (this is what makes resume bit-exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

# step_done (1-based), steps_total: called after every denoising step.
StepCallback = Callable[[int, int], None]
# Returns True when the job should stop; checked between denoising steps.
CancelCheck = Callable[[], bool]


class PoseFrames(Protocol):
    """A pose sequence that is read one slice at a time.

    A numpy array `[N, H, W, 3]` satisfies this; so does a lazy sequence that draws pose
    images from keypoints on demand, which keeps memory flat for minute-long videos.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> np.ndarray: ...


class DrawnPoseFrames:
    """`PoseFrames` that draws each frame when a slice is asked for, so only one segment's
    pose images exist at a time. `draw(i)` returns frame i as uint8 RGB `[H, W, 3]`."""

    def __init__(self, count: int, draw: Callable[[int], np.ndarray]) -> None:
        self._count = count
        self._draw = draw

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("pose frames are read by slice, e.g. poses[start:stop]")
        return np.stack([self._draw(i) for i in range(*index.indices(self._count))])


@runtime_checkable
class SegmentRenderer(Protocol):
    """One model that renders a segment of frames from a reference image and poses.

    Contract (what the chained renderer relies on):
    - `render_segment` is a pure function of its arguments: all noise comes from generators
      seeded with `seed`, never from global RNG state. Same inputs, same frames.
    - `first_frame` is the `local_image` condition. The renderer feeds it to the UNet the way
      the original feeds its first-frame condition: RGB pixels scaled to [0, 1], not
      normalised, repeated over the segment's frames (see `first_frame_condition`).
      `None` means no first-frame condition (reference image and reference pose only).
    - The reference (image, reference pose, CLIP embedding, reference latent) is computed once
      by `prepare_reference` and reused for every segment of a job.
    - `should_cancel` is checked between denoising steps; when it returns True the renderer
      raises `model.errors.RenderCancelled` before starting another step.
    """

    label: str  # names the weights, e.g. "untrained tiny (random weights)" or "<checkpoint> sha256:<hex>"
    untrained: bool

    def prepare_reference(self, image: np.ndarray, ref_pose: np.ndarray, height: int, width: int) -> Any:
        """Everything about the reference that does not depend on the segment."""
        ...

    def render_segment(
        self,
        ref: Any,
        poses: np.ndarray,
        first_frame: np.ndarray | None,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> np.ndarray:
        """Poses `[F, H, W, 3]` uint8 RGB -> frames `[F, H, W, 3]` uint8 RGB."""
        ...

    def render_window(
        self,
        ref: Any,
        poses: PoseFrames,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        context_size: int,
        context_overlap: int,
        context_batch_size: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Iterator[np.ndarray]:
        """The original's sliding-window sampler over all poses; yields `[H, W, 3]` frames in order."""
        ...


@runtime_checkable
class SplitSegmentRenderer(Protocol):
    """A `SegmentRenderer` whose segment is two stages: denoise (the GPU's long work) and decode.

    The chained renderer decodes the last frame first (the next segment's condition), starts the
    next segment's denoising, and decodes the other frames in the background while it runs.
    `render_segment(...)` must equal `decode_segment(denoise_segment(...), slice(None))`, and
    decoding frames in several calls must give the frames one call gives: the VAE decodes each
    frame on its own. A renderer with only `render_segment` is chained serially (`segment_stages`).
    """

    def denoise_segment(
        self,
        ref: Any,
        poses: np.ndarray,
        first_frame: np.ndarray | None,
        *,
        seed: int,
        steps: int,
        guidance_scale: float,
        noise_prior_t: int,
        progress: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Any:
        """The arguments of `render_segment` -> the segment's latents (opaque to the caller)."""
        ...

    def decode_segment(self, latents: Any, frames: slice) -> np.ndarray:
        """The frames `frames` of denoised latents, `[N, H, W, 3]` uint8 RGB. Safe to call from
        another thread while the next segment denoises."""
        ...


def segment_stages(renderer: SegmentRenderer) -> SplitSegmentRenderer:
    """The renderer's own denoise/decode split, or its `render_segment` as the denoise stage (whose
    "latents" are then the frames, and decoding is slicing them)."""
    if isinstance(renderer, SplitSegmentRenderer):
        return renderer
    return _WholeSegment(renderer)


class _WholeSegment:
    def __init__(self, renderer: SegmentRenderer) -> None:
        self._renderer = renderer

    def denoise_segment(self, ref: Any, poses: np.ndarray, first_frame: np.ndarray | None, **kwargs: Any) -> np.ndarray:
        return self._renderer.render_segment(ref, poses, first_frame, **kwargs)

    def decode_segment(self, latents: np.ndarray, frames: slice) -> np.ndarray:
        return latents[frames]


def first_frame_condition(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` -> float32 `[H, W, 3]` in [0, 1]: the value range of `local_image`.

    The original builds `local_image` with `ToTensor()` only (no mean/std normalisation),
    unlike the VAE input, which is mapped to [-1, 1].
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"first frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    return frame.astype(np.float32) / 255.0
