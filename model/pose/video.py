"""Decoding motion videos with PyAV: raw driving videos (for pose extraction) and videos of skeletons
that are already drawn (used as they are).

A skeleton video is taken to show the skeletons the way the model saw them: the RGB of the
original's saved frames, where the neck-to-right-shoulder limb is blue. Videos drawn by tools that
keep OpenCV's array as RGB show that limb red; `swap_red_blue=True` fixes those.

Frames come out upright: phones store portrait video as landscape frames plus a display matrix,
and the original's `cv2.VideoCapture` (OpenCV 4.9) turns frames by that matrix, so poses were
detected on upright frames. We turn them the same way (quarter turns only, as OpenCV does) and
report the upright size.
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
    width: int  # as shown, i.e. after `rotation`
    height: int
    fps: float
    num_frames: int | None  # from the container; None when it does not say (WebM often does not)
    rotation: int = 0  # degrees (0, 90, 180, 270) the stored frames are turned anticlockwise to show upright


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
    """Upright size, frame rate and (if known) frame count.

    Only the first frame is decoded: PyAV hands out the display rotation with decoded frames only.
    """
    with _open(source) as container:
        stream = _video_stream(container)
        _info(stream)  # a missing frame rate or an absurd size is refused before anything is decoded
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as exc:
            raise PoseInputError(f"the video could not be decoded at frame 0 ({exc}); re-encode it") from None
        return _info(stream, 0 if first is None else _quarter_turns(first))


def _info(stream, quarter_turns: int = 0) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate is None:
        raise PoseInputError("the video does not state a frame rate; re-encode it with a fixed fps")
    width, height = stream.codec_context.width, stream.codec_context.height
    if quarter_turns % 2:
        width, height = height, width
    if not (0 < width <= MAX_CANVAS_SIZE and 0 < height <= MAX_CANVAS_SIZE):
        raise PoseInputError(f"the video is {width}x{height}; each side must be 1..{MAX_CANVAS_SIZE} pixels")
    return VideoInfo(width, height, check_fps(float(rate)), stream.frames or None, 90 * quarter_turns)


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Anticlockwise quarter turns that show the frame upright, from its display matrix."""
    degrees = frame.rotation  # anticlockwise, -180..180
    if degrees % 90:
        raise PoseInputError(
            f"the video's display matrix turns it by {degrees} degrees; only multiples of 90 are supported: "
            "re-encode it upright"
        )
    return (degrees // 90) % 4


def _upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    # np.rot90 turns anticlockwise as the image is shown (rows down), like the display matrix.
    return np.ascontiguousarray(np.rot90(rgb, _quarter_turns(frame)))


def iter_video_frames(
    source: VideoSource, frame_interval: int | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """`(source_index, timestamp_s, rgb [H, W, 3] uint8)` for every kept frame, decoding as it goes.

    Frames are kept every `frame_interval` source frames (default: down to 15 fps or less); the
    timestamp is the source index over the source fps. Frames are turned upright by the display matrix.
    """
    with _open(source) as container:
        stream = _video_stream(container)
        info = _info(stream)
        interval = resolve_frame_interval(info.fps, frame_interval)
        kept, index, shape = 0, 0, None
        try:
            for frame in container.decode(stream):
                if index % interval == 0:
                    kept += 1
                    if kept > MAX_FRAMES:
                        raise PoseInputError(
                            f"the video gives more than {MAX_FRAMES} frames at frame_interval {interval}; "
                            "cut it or sample it more sparsely"
                        )
                    rgb = _upright_rgb(frame)
                    shape = shape or rgb.shape
                    _check_same_size(rgb.shape, shape, index)
                    yield index, index / info.fps, rgb
                index += 1  # counts frames handled, so a decoding error names the frame it failed on
        except av.FFmpegError as exc:
            raise PoseInputError(f"the video could not be decoded at frame {index} ({exc}); re-encode it") from None
        if kept == 0:
            raise PoseInputError("the video has no frames")


def _check_same_size(shape: tuple[int, ...], first: tuple[int, ...], index: int) -> None:
    if shape != first:
        raise PoseInputError(
            f"frame {index}: the picture is {shape[1]}x{shape[0]} but the first frame was {first[1]}x{first[0]}; "
            "re-encode the video at one size and orientation"
        )


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
