"""The aligned-skeleton preview: the poses the model will see, drawn over the dimmed reference photo,
as a PNG strip (frames spread over the motion) and a short MP4 (its first seconds)."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from model.motion import Motion
from model.pose.render import resize_like_original
from model.pose.video import write_video

STRIP_FRAMES = 8
CLIP_SECONDS = 3.0
CLIP_MAX_FRAMES = 48
TILE_HEIGHT = 384  # small outputs (64x64 test renders) are scaled up to this height to be seen
DIM = 0.4  # how much of the photo's brightness is kept behind the skeleton
GAP = 4


def strip_png(motion: Motion) -> bytes:
    """Frames spread evenly over the motion, labelled with their index."""
    count = len(motion.poses)
    picks = np.unique(np.linspace(0, count - 1, min(STRIP_FRAMES, count)).round().astype(int))
    tiles = [_label(_tile(motion, int(i)), f"#{i}") for i in picks]
    gap = np.full((tiles[0].shape[0], GAP, 3), 96, np.uint8)
    strip = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()


def clip_mp4(motion: Motion, path: Path) -> int:
    """The first CLIP_SECONDS (at most CLIP_MAX_FRAMES frames) at the output rate; returns the frame count."""
    count = min(len(motion.poses), CLIP_MAX_FRAMES, max(1, round(CLIP_SECONDS * float(motion.fps))))
    return write_video(path, (_tile(motion, i) for i in range(count)), float(motion.fps))


def _tile(motion: Motion, index: int) -> np.ndarray:
    pose = motion.poses[index:index + 1][0]
    height, width = pose.shape[:2]
    photo = resize_like_original(Image.fromarray(motion.reference_image), height, width)
    drawn = pose.max(axis=-1, keepdims=True) > 0
    tile = np.where(drawn, pose, (photo * DIM).astype(np.uint8))
    return _scaled(tile)


def _scaled(tile: np.ndarray) -> np.ndarray:
    height, width = tile.shape[:2]
    if height >= TILE_HEIGHT:
        return tile
    new_width = round(width * TILE_HEIGHT / height / 2) * 2  # even: yuv420p
    return cv2.resize(tile, (new_width, TILE_HEIGHT), interpolation=cv2.INTER_NEAREST)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile)
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
