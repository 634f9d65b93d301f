"""Lossless encoding of a finished segment's frames for storage checkpoints.

A resumed job must produce exactly the video an uninterrupted run would, so segment checkpoints
are lossless: FFV1 in Matroska with the `bgr0` pixel format (RGB kept bit for bit; planar and YUV
formats are not). Smaller than raw arrays, and decodable by any FFmpeg.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import av
import numpy as np

SEGMENT_SUFFIX = ".mkv"


def encode_frames(frames: Iterable[np.ndarray], fps: int = 15) -> bytes:
    """Encodes uint8 RGB frames [H, W, 3] losslessly; returns the Matroska file's bytes."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = None
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"expected uint8 [H, W, 3] frames, got {frame.dtype} {frame.shape}")
            if stream is None:
                stream = container.add_stream("ffv1", rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "bgr0"
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError("a segment needs at least one frame")
        container.mux(stream.encode())
    return buffer.getvalue()


def decode_frames(data: bytes) -> Iterator[np.ndarray]:
    """Yields the uint8 RGB frames of a file written by `encode_frames`, one at a time."""
    with av.open(io.BytesIO(data), "r") as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
