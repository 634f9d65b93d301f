"""Finished segments in object storage, so a restarted job continues where it stopped.

Segment k is stored as `segments/{k:04d}.mkv` (its new frames, lossless FFV1) and then
`segments/{k:04d}.png` (its last frame, the next segment's condition). The PNG is written last:
a segment counts as stored only when both files exist, so a crash between the two uploads just
re-renders that segment. A resume needs segments 0..k-1 all stored (contiguous from 0).
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
from PIL import Image

from model.longvideo.chain import FinishedSegment
from model.longvideo.video import Resume
from service.storage.objects import Storage, job_prefix, segment_key
from worker.segment_codec import decode_frames, encode_frames

FRAMES_EXT = "mkv"
LAST_FRAME_EXT = "png"


class SegmentCheckpoints:
    def __init__(self, storage: Storage, job_id: str) -> None:
        self.storage = storage
        self.job_id = job_id

    @property
    def prefix(self) -> str:
        return f"{job_prefix(self.job_id)}segments/"

    def save(self, finished: FinishedSegment, fps: Fraction) -> None:
        index = finished.segment.index
        self.storage.put_bytes(segment_key(self.job_id, index, FRAMES_EXT),
                               encode_frames(finished.frames, fps=max(1, round(fps))),
                               "video/x-matroska")
        self.storage.put_bytes(segment_key(self.job_id, index, LAST_FRAME_EXT), _png(finished.last_frame),
                               "image/png")

    def stored_count(self) -> int:
        """How many segments from 0 on are completely stored."""
        keys = set(self.storage.list(self.prefix))
        count = 0
        while all(segment_key(self.job_id, count, ext) in keys for ext in (FRAMES_EXT, LAST_FRAME_EXT)):
            count += 1
        return count

    def resume(self, segments_total: int) -> Resume | None:
        """Where to start again, or None to start from scratch.

        When every segment is stored (the worker died while finishing the MP4) the last one is
        rendered again: the chain must render at least one segment, and it is deterministic.
        """
        start = min(self.stored_count(), segments_total - 1)
        if start == 0:
            return None
        return Resume(start_segment=start, last_frame=self.last_frame(start - 1),
                      earlier_frames=self.frames(start))

    def last_frame(self, index: int) -> np.ndarray:
        data = self.storage.get_bytes(segment_key(self.job_id, index, LAST_FRAME_EXT))
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)

    def frames(self, count: int) -> Iterator[np.ndarray]:
        """The stored frames of segments 0..count-1, one segment `[N, H, W, 3]` at a time."""
        for index in range(count):
            data = self.storage.get_bytes(segment_key(self.job_id, index, FRAMES_EXT))
            yield np.stack(list(decode_frames(data)))

    def delete(self) -> int:
        return self.storage.delete_prefix(self.prefix)


def _png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()
