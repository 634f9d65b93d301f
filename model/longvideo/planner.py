"""Splitting N frames into segments that share one frame with the segment before them.

Segment k > 0 starts on the last frame of segment k - 1: that frame is already rendered, it
becomes the `local_image` condition of segment k, and segment k's copy of it is not written
again. So n segments of lengths L_0..L_{n-1} cover 1 + sum(L_k - 1) frames.

Instead of n - 1 full segments and a short remainder (a 2-frame last segment gives the temporal
layers almost no context, and padding it to full length, as the original does, renders frames
of zero poses), the frames are spread evenly: every segment gets the same number of new frames
give or take one, never more than `segment_frames`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_SEGMENT_FRAMES = 32


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # first pose/frame index the segment renders (the shared frame when index > 0)
    stop: int  # one past its last frame

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def chained(self) -> bool:
        """Whether this segment is conditioned on the last frame of the previous one."""
        return self.index > 0

    @property
    def first_new(self) -> int:
        """Index of the first frame this segment adds to the video."""
        return self.start + 1 if self.chained else self.start

    @property
    def new_frames(self) -> int:
        return self.stop - self.first_new


@dataclass(frozen=True)
class SegmentPlan:
    total_frames: int
    segment_frames: int
    segments: tuple[Segment, ...]

    def __len__(self) -> int:
        return len(self.segments)

    def frames_before(self, index: int) -> int:
        """How many video frames segments 0..index-1 have written."""
        return self.segments[index].first_new


def plan_segments(total_frames: int, segment_frames: int = DEFAULT_SEGMENT_FRAMES) -> SegmentPlan:
    """The segments that render `total_frames` frames, at most `segment_frames` each."""
    if total_frames < 1:
        raise ValueError(f"a video needs at least one frame, got total_frames={total_frames}")
    if segment_frames < 2:
        raise ValueError(
            f"segment_frames must be at least 2 (one shared frame plus one new frame), got {segment_frames}"
        )
    # After the very first frame, each segment adds at most segment_frames - 1 new frames.
    steps = total_frames - 1
    count = max(1, math.ceil(steps / (segment_frames - 1)))
    base, extra = divmod(steps, count)
    segments, start = [], 0
    for index in range(count):
        added = base + (1 if index < extra else 0)
        segments.append(Segment(index=index, start=start, stop=start + added + 1))
        start += added
    return SegmentPlan(total_frames, segment_frames, tuple(segments))
