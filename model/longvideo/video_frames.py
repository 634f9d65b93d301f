"""The frames of a rendered skeleton video, read lazily at the output rate.

A minute of 768x512 pose frames is over a gigabyte, so frames are decoded when a segment asks
for them, by the pose package's streaming decoder (`model.pose.video.iter_video_frames`, the
one place videos are decoded). Segments ask in order (each starts on the previous one's last
frame), which a forward-only decoder serves without seeking; going backwards reopens the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from model.longvideo.mp4 import probe_video
from model.pose.render import resize_like_original
from model.pose.video import iter_video_frames


class VideoPoseFrames:
    """Every `frame_interval`-th frame of a video, resized to `height` x `width` like the original
    resizes its pose images (PIL bilinear), as uint8 RGB; `PoseFrames` for the chained renderer."""

    def __init__(
        self, path: Path, *, frame_interval: int, height: int, width: int, max_frames: int | None = None
    ) -> None:
        self.path = Path(path)
        self._interval, self._height, self._width = frame_interval, height, width
        source_frames = probe_video(self.path).frames
        count = -(-source_frames // frame_interval)  # ceil: frames 0, K, 2K, ... of the source
        self._count = count if max_frames is None else min(count, max_frames)
        if self._count < 1:
            raise ValueError(f"{self.path}: the pose video has no frames")
        self._reader: Iterator[np.ndarray] | None = None
        self._next = 0  # index (at the output rate) of the frame the reader yields next

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("pose frames are read by slice, e.g. poses[start:stop]")
        start, stop, step = index.indices(self._count)
        if step != 1:
            raise ValueError("pose frames are read in consecutive runs")
        return np.stack([self._frame(i) for i in range(start, stop)])

    def _frame(self, index: int) -> np.ndarray:
        if index == self._next - 1:
            return self._last
        if self._reader is None or index < self._next:
            self._reader, self._next = self._sampled_frames(), 0
        while self._next <= index:
            self._last = next(self._reader)
            self._next += 1
        return self._last

    def _sampled_frames(self) -> Iterator[np.ndarray]:
        for _, _, rgb in iter_video_frames(self.path, self._interval):
            yield resize_like_original(Image.fromarray(rgb), self._height, self._width)
