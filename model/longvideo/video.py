"""One job, start to finish: reference once, segments (or windows) in order, frames to an MP4.

This is what the CLI and the benchmark call. The worker drives `render_chain` itself when it
checkpoints segments to storage, and can hand the stored state back here through `Resume`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from model.conditions import CONDITION_SETS
from model.longvideo.chain import DenoisedSegment, FinishedSegment, SamplingOptions, denoise_chain
from model.longvideo.mp4 import DEFAULT_CRF, MAX_CRF, EncodedSegment, Mp4Writer, exact_fps
from model.longvideo.overlap import BackgroundStage
from model.longvideo.planner import DEFAULT_SEGMENT_FRAMES, plan_segments
from model.longvideo.progress import ProgressCallback, ProgressTracker
from model.longvideo.protocol import CancelCheck, PoseFrames, SegmentRenderer
from model.pose.sampling import default_frame_interval

MODES = ("chain", "window")


@dataclass(frozen=True)
class RenderOptions:
    height: int = 768
    width: int = 512
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    mode: str = "chain"  # "chain": first-frame chaining; "window": the original's sliding-window sampler
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    context_size: int = 32
    context_overlap: int = 8
    context_batch_size: int = 1
    crf: int = DEFAULT_CRF
    conditions: str = "chained"  # a name of model.conditions.CONDITION_SETS

    def __post_init__(self) -> None:
        if self.conditions not in CONDITION_SETS:
            raise ValueError(f"conditions must be one of {list(CONDITION_SETS)}, got {self.conditions!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.height <= 0 or self.width <= 0 or self.height % 8 or self.width % 8:
            raise ValueError(
                f"height and width must be positive multiples of 8, got {self.height}x{self.width}"
            )
        if self.segment_frames < 2:
            raise ValueError(f"segment_frames must be at least 2 (one shared frame plus one new), got {self.segment_frames}")
        if not 0 <= self.crf <= MAX_CRF:
            raise ValueError(f"crf must be in [0, {MAX_CRF}] (H.264 quality, lower is better), got {self.crf}")
        if self.context_size < 1 or self.context_batch_size < 1:
            raise ValueError("context_size and context_batch_size must be at least 1")
        if not 0 <= self.context_overlap < self.context_size:
            raise ValueError(
                f"context_overlap must be in [0, context_size), got {self.context_overlap} for {self.context_size}"
            )


@dataclass(frozen=True)
class Resume:
    """Where an interrupted chained job starts again."""

    start_segment: int
    last_frame: np.ndarray  # the stored last frame of segment start_segment - 1
    earlier_frames: Iterable[np.ndarray] = ()  # stored frames of segments 0..start_segment-1, one per segment
    # each restored segment's packets (the same as the first run's), e.g. to publish what a copy lacks
    on_restored: Callable[[int, EncodedSegment], None] | None = None


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    fps: Fraction
    duration_s: float


def output_timing(source_fps: Fraction | float, frame_interval: int | None = None) -> tuple[int, Fraction]:
    """The interval to sample source frames at and the exact output fps (= source fps / interval)."""
    rate = exact_fps(source_fps)
    interval = default_frame_interval(float(rate)) if frame_interval is None else int(frame_interval)
    if interval < 1:
        raise ValueError(f"frame_interval must be >= 1, got {frame_interval}")
    return interval, rate / interval


def video_metadata(renderer: SegmentRenderer, options: RenderOptions) -> dict[str, str]:
    """Tags that say how the file was made; an untrained model is always named as such."""
    params = asdict(options)
    sampling = params.pop("sampling")
    if not sampling["seed_changes"]:  # only re-renders have them; other files keep their old tags
        del sampling["seed_changes"]
    return {
        "title": "UniAnimate animation",
        "model": "UniAnimate",
        "checkpoint": renderer.label,
        "untrained": "true" if renderer.untrained else "false",
        "seed": str(options.sampling.seed),
        "params": json.dumps({**sampling, **params}, sort_keys=True),
        "comment": f"UniAnimate, {renderer.label}, seed {options.sampling.seed}, {options.mode} mode",
    }


def render_video(
    renderer: SegmentRenderer,
    reference_image: np.ndarray,
    ref_pose: np.ndarray,
    poses: PoseFrames,
    out: Path,
    *,
    fps: Fraction | float,
    options: RenderOptions = RenderOptions(),
    first_frame: np.ndarray | None = None,
    audio_source: Path | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_segment_done: Callable[[FinishedSegment], None] | None = None,
    resume: Resume | None = None,
    overlap: bool = True,
) -> VideoResult:
    """Renders `poses` (already sampled at the output rate) into an MP4 at `out`.

    In chain mode each segment is a run of the encoder of its own (`Mp4Writer.cut`), handed to
    `on_segment_done` as `FinishedSegment.encoded`: the packets in the file, to mux elsewhere.
    In chain mode with `overlap`, segment k's remaining decode, its MP4 frames and `on_segment_done`
    run in a background thread while segment k + 1 denoises (`model.longvideo.overlap`); the file
    and the calls are the same, in the same order, as without it. `on_segment_done` then runs in
    that thread, and its exceptions reach the caller as they would serially.
    On any error or cancellation no file is left at `out`.
    """
    if options.mode == "window" and (first_frame is not None or resume is not None):
        raise ValueError("a first frame and resuming are only available in chain mode")
    # only a non-default set is passed on, so renderers without condition sets keep working
    extra = {} if options.conditions == "chained" else {"conditions": CONDITION_SETS[options.conditions]}
    ref = renderer.prepare_reference(reference_image, ref_pose, options.height, options.width, **extra)
    metadata = video_metadata(renderer, options)
    with Mp4Writer(
        out,
        fps=fps,
        width=options.width,
        height=options.height,
        crf=options.crf,
        metadata=metadata,
        audio_source=audio_source,
    ) as writer:
        if options.mode == "chain":
            _write_chain(
                renderer,
                ref,
                poses,
                options,
                writer,
                first_frame,
                resume,
                on_progress,
                should_cancel,
                on_segment_done,
                overlap,
            )
        else:
            _write_window(renderer, ref, poses, options, writer, on_progress, should_cancel)
        if writer.frames_written != len(poses):
            raise RuntimeError(
                f"{renderer.label}: wrote {writer.frames_written} frames for {len(poses)} poses"
            )
    return VideoResult(Path(out), writer.frames_written, writer.fps, float(writer.duration))


def _write_chain(
    renderer, ref, poses, options, writer, first_frame, resume, on_progress, should_cancel, on_segment_done, overlap
) -> None:
    if resume is not None:
        for index, frames in enumerate(resume.earlier_frames):  # cut where the first run cut: the same packets
            writer.write(frames)
            encoded = writer.cut()
            if resume.on_restored is not None and encoded is not None:
                resume.on_restored(index, encoded)
        expected = plan_segments(len(poses), options.segment_frames).frames_before(resume.start_segment)
        if writer.frames_written != expected:
            raise ValueError(
                f"resuming at segment {resume.start_segment} needs the {expected} frames of the segments "
                f"before it, got {writer.frames_written}"
            )

    def finish(denoised: DenoisedSegment) -> None:
        finished = denoised.finish()
        writer.write(finished.frames)
        finished = replace(finished, encoded=writer.cut())  # each segment is a run of its own
        if on_segment_done is not None:
            on_segment_done(finished)

    with BackgroundStage(enabled=overlap) as stage:
        segments = denoise_chain(
            renderer,
            ref,
            poses,
            options.sampling,
            segment_frames=options.segment_frames,
            first_frame=first_frame,
            start_segment=0 if resume is None else resume.start_segment,
            previous_last_frame=None if resume is None else resume.last_frame,
            on_progress=on_progress,
            should_cancel=stage.guard(should_cancel),
            prefetch_poses=overlap,
        )
        for denoised in segments:
            stage.submit(lambda denoised=denoised: finish(denoised))
        stage.drain()


def _write_window(renderer, ref, poses, options, writer, on_progress, should_cancel) -> None:
    # A clip no longer than the window is one window of all its frames: model/window.py plans
    # that (the original wraps, repeats or drops frames there), so the options pass through.
    tracker = ProgressTracker([len(poses)], len(poses), on_progress)
    sampling = options.sampling
    frames = renderer.render_window(
        ref,
        poses,
        seed=sampling.seed,
        steps=sampling.steps,
        guidance_scale=sampling.guidance_scale,
        noise_prior_t=sampling.noise_prior_t,
        context_size=options.context_size,
        context_overlap=options.context_overlap,
        context_batch_size=options.context_batch_size,
        progress=tracker.step,
        should_cancel=should_cancel,
    )
    for frame in frames:
        writer.write(frame)
    tracker.segment_done(writer.frames_written)
