"""A pose folder in the original's layout: drawn skeleton frames plus `ref_pose.jpg`.

The original's pose script writes every frame of a driving video as `NNNN.jpg` and the reference
photo's pose as `ref_pose.jpg` into one folder; its inference entrances read that folder back with
PIL. Reading such a folder the same way lets a user feed the original's inputs unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.pose.keypoints import PoseInputError

REF_POSE_NAME = "ref_pose.jpg"


@dataclass(frozen=True)
class PoseFolder:
    ref_pose: np.ndarray  # [h, w, 3] uint8 RGB as decoded
    frames: np.ndarray  # [n, h, w, 3] uint8 RGB, the selected frames in order
    names: tuple[str, ...]  # the selected frames' file names
    stride: int  # the frame interval actually used


def select_frames(count: int, max_frames: int, frame_interval: int) -> tuple[list[int], int]:
    """Indices of the frames the original's `load_video_frames` takes, and the stride it ends up using.

    With enough frames, every `frame_interval`-th from 0; with too few, the stride shrinks to
    max((count - 1) // (max_frames - 1), 1) and as many frames as there are (at most max_frames).
    """
    if max_frames < 1 or frame_interval < 1:
        raise ValueError("max_frames and frame_interval must be >= 1")
    stride = frame_interval
    if count < frame_interval * (max_frames - 1) + 1:
        stride = max((count - 1) // max(max_frames - 1, 1), 1)
    return [i for i in range(0, stride * max_frames, stride) if i < count], stride


def read_pose_folder(folder: str | os.PathLike, max_frames: int, frame_interval: int = 1) -> PoseFolder:
    """Every name in the folder except `ref_pose.jpg` is a frame (sorted by name, as the original lists
    them); frames and the reference pose are decoded with PIL, converted to RGB."""
    folder = Path(folder)
    if not (folder / REF_POSE_NAME).is_file():
        raise PoseInputError(f"{folder} has no {REF_POSE_NAME}: a pose folder needs the reference photo's pose")
    names = sorted(name for name in os.listdir(folder) if name != REF_POSE_NAME)
    if not names:
        raise PoseInputError(f"{folder} holds no pose frames besides {REF_POSE_NAME}")
    indices, stride = select_frames(len(names), max_frames, frame_interval)
    chosen = tuple(names[i] for i in indices)
    frames = np.stack([_read_rgb(folder / name) for name in chosen])
    return PoseFolder(_read_rgb(folder / REF_POSE_NAME), frames, chosen, stride)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise PoseInputError(f"{path} is not a readable image ({exc})") from None
