"""Decoding motion videos with PyAV: raw driving videos (for pose extraction) and videos of skeletons
that are already drawn (used as they are).

A skeleton video is taken to show the skeletons the way the model saw them: the RGB of the
original's saved frames, where the neck-to-right-shoulder limb is blue. Videos drawn by tools that
keep OpenCV's array as RGB show that limb red; `swap_red_blue=True` fixes those.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from model.pose.keypoints import MAX_CANVAS_SIZE, MAX_FRAMES, PoseInputError, check_fps
from model.pose.sampling import resolve_frame_interval

VideoSource = str | Path | bytes

# Decoded skeleton frames are held in memory; refuse videos that would need more than this.
MAX_SKELETON_VIDEO_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int | None  # from the container; None when it does not say (WebM often does not)


@dataclass(frozen=True, eq=False)
class SkeletonVideo:
    """Sampled frames of a video of drawn skeletons: `[F, H, W, 3]` uint8 RGB, read-only."""

    frames: np.ndarray
    fps: float
    source_fps: float
    frame_interval: int

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def timestamps(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps


def _open(source: VideoSource) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise PoseInputError(f"could not open the video ({exc}); send an MP4, WebM, MOV or GIF file") from None


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise PoseInputError("the file has no video stream; send an MP4, WebM, MOV or GIF file")
    return container.streams.video[0]


def probe_video(source: VideoSource) -> VideoInfo:
    """Size, frame rate and (if known) frame count, without decoding."""
    with _open(source) as container:
        return _info(_video_stream(container))


def _info(stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate is None:
        raise PoseInputError("the video does not state a frame rate; re-encode it with a fixed fps")
    width, height = stream.codec_context.width, stream.codec_context.height
    if not (0 < width <= MAX_CANVAS_SIZE and 0 < height <= MAX_CANVAS_SIZE):
        raise PoseInputError(f"the video is {width}x{height}; each side must be 1..{MAX_CANVAS_SIZE} pixels")
    return VideoInfo(width, height, check_fps(float(rate)), stream.frames or None)


def iter_video_frames(
    source: VideoSource, frame_interval: int | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """`(source_index, timestamp_s, rgb [H, W, 3] uint8)` for every kept frame, decoding as it goes.

    Frames are kept every `frame_interval` source frames (default: down to 15 fps or less); the
    timestamp is the source index over the source fps.
    """
    with _open(source) as container:
        stream = _video_stream(container)
        info = _info(stream)
        interval = resolve_frame_interval(info.fps, frame_interval)
        kept = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % interval:
                    continue
                kept += 1
                if kept > MAX_FRAMES:
                    raise PoseInputError(
                        f"the video gives more than {MAX_FRAMES} frames at frame_interval {interval}; "
                        "cut it or sample it more sparsely"
                    )
                yield index, index / info.fps, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise PoseInputError(f"the video could not be decoded ({exc}); re-encode it") from None
        if kept == 0:
            raise PoseInputError("the video has no frames")


def load_skeleton_video(
    source: VideoSource, frame_interval: int | None = None, *, swap_red_blue: bool = False
) -> SkeletonVideo:
    """Decodes a video of drawn skeletons, keeping every `frame_interval`-th frame."""
    info = probe_video(source)
    interval = resolve_frame_interval(info.fps, frame_interval)
    frames: list[np.ndarray] = []
    for _, _, rgb in iter_video_frames(source, interval):
        if (len(frames) + 1) * rgb.nbytes > MAX_SKELETON_VIDEO_BYTES:
            raise PoseInputError(
                f"the skeleton video is too large to hold ({info.width}x{info.height}); cut it, lower its "
                "resolution or raise frame_interval"
            )
        frames.append(rgb[..., ::-1] if swap_red_blue else rgb)
    stacked = np.ascontiguousarray(np.stack(frames))
    stacked.setflags(write=False)
    return SkeletonVideo(stacked, info.fps / interval, info.fps, interval)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, *, crf: int = 18) -> int:
    """Encodes RGB uint8 frames (all one even size) as H.264 MP4; returns the number of frames written.

    Only for previews and rendered skeletons meant for people: H.264's chroma subsampling blurs the
    thin limbs slightly, so a video written here is not pixel-exact model input any more.
    """
    written = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for rgb in frames:
            if written == 0:
                stream.height, stream.width = rgb.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
            written += 1
        for packet in stream.encode():
            container.mux(packet)
    return written
