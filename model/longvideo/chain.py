"""First-frame chaining: a video of any length as a sequence of segments.

Segment 0 is conditioned on the reference (and on a user-given first frame, if any); segment
k > 0 is also conditioned on the last frame of segment k - 1 and starts on that frame's pose.
At most two segments are alive at a time (one denoising, the one before it being decoded and
written), so memory does not depend on the length of the video. Segment k + 1 needs only the
last frame of k, so that frame is decoded first (`denoise_chain`) and the rest can wait.

Segment k depends only on the reference, its poses, its seed and the last frame of k - 1,
so a job that stored that frame can resume at segment k and produce the same frames as a run
that never stopped (`start_segment` and `previous_last_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.errors import RenderCancelled
from model.longvideo.mp4 import EncodedSegment
from model.longvideo.planner import DEFAULT_SEGMENT_FRAMES, Segment, SegmentPlan, plan_segments
from model.longvideo.progress import ProgressCallback, ProgressTracker
from model.longvideo.protocol import (
    CancelCheck,
    PoseFrames,
    SegmentRenderer,
    SplitSegmentRenderer,
    segment_stages,
)
from model.longvideo.seeds import MAX_SEED, segment_seed

NUM_TIMESTEPS = 1000  # the diffusion schedule's length (model.schedule, kept free of torch here)


@dataclass(frozen=True)
class SamplingOptions:
    """How each segment is denoised (the original's long-video defaults)."""

    seed: int = 0
    steps: int = 30
    guidance_scale: float = 2.5
    noise_prior_t: int = 939
    # (segment index, job seed) pairs: from that segment on, segment seeds derive from that seed
    # instead of `seed`. A re-render from segment k keeps its parent's segments 0..k-1 and draws
    # new noise from k on; replaying it needs both seeds.
    seed_changes: tuple[tuple[int, int], ...] = ()

    def seed_of(self, index: int) -> int:
        """The seed segment `index` is denoised with."""
        job_seed = self.seed
        for start, seed in sorted(self.seed_changes):
            if start <= index:
                job_seed = seed
        return segment_seed(job_seed, index)

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
        for start, seed in self.seed_changes:
            if start < 0 or not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed_changes: ({start}, {seed}) needs a segment >= 0 and a seed in [0, 2**63 - 1]")


@dataclass(frozen=True)
class FinishedSegment:
    segment: Segment
    frames: np.ndarray  # [segment.new_frames, H, W, 3] uint8: what this segment adds to the video
    last_frame: np.ndarray  # [H, W, 3] uint8: the next segment's condition; store it to resume there
    # its frames as the MP4 writer encoded them (`render_video` sets it), to mux elsewhere unchanged
    encoded: EncodedSegment | None = None


@dataclass(frozen=True)
class DenoisedSegment:
    """A segment whose last frame is decoded; `finish()` decodes the rest (in the background, while
    the next segment denoises, when the caller overlaps them)."""

    segment: Segment
    last_frame: np.ndarray  # [H, W, 3] uint8
    latents: Any
    stages: SplitSegmentRenderer
    label: str  # the renderer's, for errors

    def finish(self) -> FinishedSegment:
        segment = self.segment
        first, last = segment.first_new - segment.start, segment.length - 1
        if first < last:
            rest = self.stages.decode_segment(self.latents, slice(first, last))
            _check_frames(rest, (last - first, *self.last_frame.shape), self.label)
            frames = np.concatenate([rest, self.last_frame[None]])
        else:
            frames = self.last_frame[None].copy()
        return FinishedSegment(segment, frames, self.last_frame)


def render_chain(
    renderer: SegmentRenderer,
    ref: Any,
    poses: PoseFrames,
    sampling: SamplingOptions,
    **kwargs: Any,
) -> Iterator[FinishedSegment]:
    """`denoise_chain` with each segment finished before the next one starts (serial)."""
    for denoised in denoise_chain(renderer, ref, poses, sampling, **kwargs):
        yield denoised.finish()


def denoise_chain(
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
    prefetch_poses: bool = False,
) -> Iterator[DenoisedSegment]:
    """Denoises the segments of `plan_segments(len(poses), segment_frames)` from `start_segment` on,
    and decodes each one's last frame, which is all the next segment needs.

    `ref` comes from `renderer.prepare_reference`. To resume at segment k > 0, pass
    `start_segment=k` and the stored `last_frame` of segment k - 1 as `previous_last_frame`.
    Raises `RenderCancelled` between segments (and, through the renderer, between steps).
    With `prefetch_poses`, the next segment's poses are read (drawn, decoded) in a thread while
    the current one denoises, so the GPU does not wait for them.
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
    stages = segment_stages(renderer)
    segments = plan.segments[start_segment:]
    for segment, segment_poses in zip(segments, _segment_poses(poses, segments, prefetch_poses)):
        if should_cancel is not None and should_cancel():
            raise RenderCancelled(f"canceled before segment {segment.index + 1} of {len(plan)}")
        latents, height, width = _denoise_one(stages, ref, segment_poses, segment, condition, sampling, tracker,
                                              should_cancel)
        last = stages.decode_segment(latents, slice(segment.length - 1, segment.length))
        _check_frames(last, (1, height, width, 3), renderer.label)
        condition = last[0].copy()
        tracker.segment_done(segment.stop)
        yield DenoisedSegment(segment, condition, latents, stages, renderer.label)


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


def _segment_poses(poses: PoseFrames, segments: tuple[Segment, ...], prefetch: bool) -> Iterator[np.ndarray]:
    """Each segment's poses in order; with `prefetch`, segment k + 1's are read in one thread (pose
    sequences read forward, one reader at a time) while segment k is being denoised."""
    if not prefetch:
        for segment in segments:
            yield _read_poses(poses, segment)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pose-prefetch") as pool:
        ahead: Future | None = None
        for i, segment in enumerate(segments):
            current = ahead.result() if ahead is not None else _read_poses(poses, segment)
            ahead = pool.submit(_read_poses, poses, segments[i + 1]) if i + 1 < len(segments) else None
            yield current


def _read_poses(poses: PoseFrames, segment: Segment) -> np.ndarray:
    return np.asarray(poses[segment.start : segment.stop])


def _denoise_one(
    stages: SplitSegmentRenderer,
    ref: Any,
    segment_poses: np.ndarray,
    segment: Segment,
    condition: np.ndarray | None,
    sampling: SamplingOptions,
    tracker: ProgressTracker,
    should_cancel: CancelCheck | None,
) -> tuple[Any, int, int]:
    latents = stages.denoise_segment(
        ref,
        segment_poses,
        condition,
        seed=sampling.seed_of(segment.index),
        steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        noise_prior_t=sampling.noise_prior_t,
        progress=tracker.step,
        should_cancel=should_cancel,
    )
    return latents, *segment_poses.shape[1:3]


def _check_frames(frames: np.ndarray, expected: tuple[int, ...], label: str) -> None:
    if frames.dtype != np.uint8 or frames.shape != expected:
        raise RuntimeError(f"{label}: the segment decoded to {frames.dtype} {frames.shape}, expected uint8 {expected}")
