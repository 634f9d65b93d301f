"""First-frame chaining: a video of any length as a sequence of segments.

Segment 0 is conditioned on the reference (and on a user-given first frame, if any); segment
k > 0 is also conditioned on the last frame of segment k - 1 and starts on that frame's pose.
Only one segment is alive at a time, so memory does not depend on the length of the video.

Segment k depends only on the reference, its poses, its seed and the last frame of k - 1,
so a job that stored that frame can resume at segment k and produce the same frames as a run
that never stopped (`start_segment` and `previous_last_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.errors import RenderCancelled
from model.longvideo.planner import DEFAULT_SEGMENT_FRAMES, Segment, SegmentPlan, plan_segments
from model.longvideo.progress import ProgressCallback, ProgressTracker
from model.longvideo.protocol import CancelCheck, PoseFrames, SegmentRenderer
from model.longvideo.seeds import MAX_SEED, segment_seed

NUM_TIMESTEPS = 1000  # the diffusion schedule's length (model.schedule, kept free of torch here)


@dataclass(frozen=True)
class SamplingOptions:
    """How each segment is denoised (the original's long-video defaults)."""

    seed: int = 0
    steps: int = 30
    guidance_scale: float = 2.5
    noise_prior_t: int = 939

    def __post_init__(self) -> None:
        # checked here, before any weights load, so every caller (CLI, worker, benchmark) fails fast
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed}")
        if not 1 <= self.steps <= NUM_TIMESTEPS:
            raise ValueError(f"steps must be in [1, {NUM_TIMESTEPS}], got {self.steps}")
        if not 0 <= self.noise_prior_t < NUM_TIMESTEPS:
            raise ValueError(f"noise_prior_t must be in [0, {NUM_TIMESTEPS - 1}], got {self.noise_prior_t}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {self.guidance_scale}")


@dataclass(frozen=True)
class FinishedSegment:
    segment: Segment
    frames: np.ndarray  # [segment.new_frames, H, W, 3] uint8: what this segment adds to the video
    last_frame: np.ndarray  # [H, W, 3] uint8: the next segment's condition; store it to resume there


def render_chain(
    renderer: SegmentRenderer,
    ref: Any,
    poses: PoseFrames,
    sampling: SamplingOptions,
    *,
    segment_frames: int = DEFAULT_SEGMENT_FRAMES,
    first_frame: np.ndarray | None = None,
    start_segment: int = 0,
    previous_last_frame: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Iterator[FinishedSegment]:
    """Renders the segments of `plan_segments(len(poses), segment_frames)` from `start_segment` on.

    `ref` comes from `renderer.prepare_reference`. To resume at segment k > 0, pass
    `start_segment=k` and the stored `last_frame` of segment k - 1 as `previous_last_frame`.
    Raises `RenderCancelled` between segments (and, through the renderer, between steps).
    """
    plan = plan_segments(len(poses), segment_frames)
    condition = _starting_condition(plan, start_segment, first_frame, previous_last_frame)
    tracker = ProgressTracker(
        [s.length for s in plan.segments],
        plan.total_frames,
        on_progress,
        start_segment=start_segment,
        frames_done=plan.frames_before(start_segment),
    )
    for segment in plan.segments[start_segment:]:
        if should_cancel is not None and should_cancel():
            raise RenderCancelled(f"canceled before segment {segment.index + 1} of {len(plan)}")
        frames = _render_one(renderer, ref, poses, segment, condition, sampling, tracker, should_cancel)
        condition = frames[-1].copy()
        finished = FinishedSegment(segment, frames[segment.first_new - segment.start :], condition)
        tracker.segment_done(segment.stop)
        yield finished


def _starting_condition(
    plan: SegmentPlan,
    start_segment: int,
    first_frame: np.ndarray | None,
    previous_last_frame: np.ndarray | None,
) -> np.ndarray | None:
    if not 0 <= start_segment < len(plan):
        raise ValueError(f"start_segment must be in [0, {len(plan) - 1}], got {start_segment}")
    if start_segment == 0:
        if previous_last_frame is not None:
            raise ValueError("previous_last_frame is only for resuming at a segment > 0")
        return first_frame
    if previous_last_frame is None:
        raise ValueError(
            f"resuming at segment {start_segment} needs the stored last frame of segment {start_segment - 1}"
        )
    return previous_last_frame


def _render_one(
    renderer: SegmentRenderer,
    ref: Any,
    poses: PoseFrames,
    segment: Segment,
    condition: np.ndarray | None,
    sampling: SamplingOptions,
    tracker: ProgressTracker,
    should_cancel: CancelCheck | None,
) -> np.ndarray:
    segment_poses = np.asarray(poses[segment.start : segment.stop])
    frames = renderer.render_segment(
        ref,
        segment_poses,
        condition,
        seed=segment_seed(sampling.seed, segment.index),
        steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        noise_prior_t=sampling.noise_prior_t,
        progress=tracker.step,
        should_cancel=should_cancel,
    )
    expected = (segment.length, *segment_poses.shape[1:3], 3)
    if frames.dtype != np.uint8 or frames.shape != expected:
        raise RuntimeError(
            f"{renderer.label}: render_segment returned {frames.dtype} {frames.shape}, expected uint8 {expected}"
        )
    return frames
