"""Small valid (and deliberately broken) inputs for API tests, made in memory."""
from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image


def png_bytes(width: int = 64, height: int = 96, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def video_bytes(tmp: Path, fmt: str = "mp4", codec: str = "libx264", frames: int = 3, fps: int = 8,
                size: tuple[int, int] = (64, 64), pix_fmt: str = "yuv420p") -> bytes:
    """A tiny real video (PyAV) in container `fmt`, frames of flat grey levels (width, height = size)."""
    path = tmp / f"clip.{fmt}"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        for i in range(frames):
            image = np.full((size[1], size[0], 3), i * 9, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def mp4_bytes(tmp: Path, frames: int = 6, fps: int = 8, size: tuple[int, int] = (64, 96)) -> bytes:
    """A tiny H.264 MP4 (width, height = size)."""
    return video_bytes(tmp, frames=frames, fps=fps, size=size)


def keypoints_bytes(frames: int = 3, fps: float = 8) -> bytes:
    """OpenPose-style per-frame keypoints: 18 body points (x, y, confidence), at `fps`."""
    frame = {"people": [{"pose_keypoints_2d": [0.5, 0.5, 0.9] * 18}]}
    return json.dumps({"fps": fps, "frames": [frame] * frames}).encode()


def keypoint_upload_files(**extra) -> dict:
    """Multipart `files=` for a valid keypoint-driven POST /animate."""
    return {"reference_image": ("photo of me.png", png_bytes(), "image/png"),
            "pose_keypoints": ("poses.json", keypoints_bytes(), "application/json"), **extra}
