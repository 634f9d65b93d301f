"""Which source frames become output frames, at what frame rate, and optional keypoint smoothing.

The original sampled its 30 fps sources every second frame (`frame_interval` 2). We keep that
rule for explicit intervals and pick the default so that output lands at 15 fps or less.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from model.pose.keypoints import PoseInputError

if TYPE_CHECKING:
    from model.pose.keypoints import PoseSequence

MAX_DEFAULT_FPS = 15.0


def default_frame_interval(source_fps: float, max_fps: float = MAX_DEFAULT_FPS) -> int:
    """The smallest integer interval that brings `source_fps` to `max_fps` or less.

    Bad values raise PoseInputError, a ValueError.
    """
    if not math.isfinite(source_fps) or source_fps <= 0:
        raise PoseInputError(f"source fps must be a positive number, got {source_fps}")
    # A tiny tolerance keeps 30 fps / 2 = 15 fps from being pushed to 3 by float noise.
    return max(1, math.ceil(source_fps / max_fps - 1e-9))


def resolve_frame_interval(source_fps: float, frame_interval: int | None = None) -> int:
    """`frame_interval` checked, or the default for `source_fps` when it is None."""
    if frame_interval is None:
        return default_frame_interval(source_fps)
    if isinstance(frame_interval, bool) or int(frame_interval) != frame_interval or frame_interval < 1:
        raise PoseInputError(f"frame_interval must be a whole number >= 1, got {frame_interval}")
    return int(frame_interval)


def sample_frame_indices(
    num_source_frames: int, source_fps: float, frame_interval: int | None = None
) -> tuple[list[int], float]:
    """Indices of the source frames to keep and the output fps (= source fps / interval)."""
    if num_source_frames <= 0:
        raise PoseInputError("the pose sequence is empty: it needs at least one frame")
    interval = resolve_frame_interval(source_fps, frame_interval)
    return list(range(0, num_source_frames, interval)), source_fps / interval


def resample(sequence: PoseSequence, frame_interval: int | None = None) -> PoseSequence:
    """Every `frame_interval`-th frame of `sequence`, with its fps divided accordingly."""
    if sequence.fps is None:
        raise PoseInputError("the pose sequence has no fps: give the source fps to sample it")
    indices, fps = sample_frame_indices(sequence.num_frames, sequence.fps, frame_interval)
    return sequence.select(indices).replace(fps=fps)


# ---- One-Euro smoothing -------------------------------------------------------------------------
# Casiez et al., "1 Euro Filter" (CHI 2012): a low-pass filter whose cutoff rises with the speed of
# the signal, so slow jitter is removed while fast motion is not lagged. The original ships the filter
# (run_align_pose.OneEuroFilter) but never calls it; this is the same filter, run per coordinate.


def _alpha(elapsed: float, cutoff: np.ndarray | float) -> np.ndarray:
    r = 2 * math.pi * cutoff * elapsed
    return r / (r + 1)


def one_euro_filter(
    values: np.ndarray, present: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """Filters `values` `[F, ..., 2]` over the frame axis, sampled at `fps`.

    `present` `[F, ...]` marks observed points; a point that goes missing restarts its filter when it
    comes back, and missing points are passed through unchanged.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise PoseInputError(f"smoothing needs a positive fps, got {fps}")
    if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
        raise PoseInputError("One-Euro parameters need min_cutoff > 0, beta >= 0 and d_cutoff > 0")
    elapsed = 1.0 / fps
    out = np.array(values, dtype=np.float64, copy=True)
    previous = out[0].copy()
    previous_speed = np.zeros_like(previous)
    was_present = np.asarray(present[0], bool)
    for t in range(1, len(out)):
        now = np.asarray(present[t], bool)
        tracked = (now & was_present)[..., None]
        speed = (out[t] - previous) / elapsed
        speed_hat = _alpha(elapsed, d_cutoff) * speed + (1 - _alpha(elapsed, d_cutoff)) * previous_speed
        a = _alpha(elapsed, min_cutoff + beta * np.abs(speed_hat))
        smoothed = a * out[t] + (1 - a) * previous
        out[t] = np.where(tracked, smoothed, out[t])
        previous = out[t].copy()
        previous_speed = np.where(tracked, speed_hat, 0.0)
        was_present = now
    return out


def smooth(sequence: PoseSequence, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> PoseSequence:
    """The sequence with body, hand and face keypoints One-Euro filtered over time."""
    if sequence.fps is None:
        raise PoseInputError("smoothing needs the sequence's fps")
    params = {"fps": sequence.fps, "min_cutoff": min_cutoff, "beta": beta, "d_cutoff": d_cutoff}
    return sequence.replace(
        body=one_euro_filter(sequence.body, sequence.body_present, **params),
        hands=one_euro_filter(sequence.hands, sequence.hands_present, **params),
        face=one_euro_filter(sequence.face, sequence.face_present, **params),
    )
