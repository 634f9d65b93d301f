"""Segment checkpoints: stored losslessly, counted only when complete and contiguous from 0."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from model.longvideo.chain import FinishedSegment
from model.longvideo.planner import Segment
from service.storage.objects import segment_key
from worker.segment_store import SegmentCheckpoints

JOB = "b" * 32


def finished(index: int, frames: int = 4) -> FinishedSegment:
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, (frames, 16, 24, 3), dtype=np.uint8)
    return FinishedSegment(Segment(index, index * frames, (index + 1) * frames), pixels, pixels[-1].copy())


def test_saved_segments_come_back_bit_for_bit(storage):
    checkpoints = SegmentCheckpoints(storage, JOB)
    segments = [finished(k) for k in range(3)]
    for segment in segments:
        checkpoints.save(segment, Fraction(15))
    assert checkpoints.stored_count() == 3
    for stored, original in zip(checkpoints.frames(3), segments, strict=True):
        assert np.array_equal(stored, original.frames)
    resume = checkpoints.resume(segments_total=5)
    assert resume.start_segment == 3 and np.array_equal(resume.last_frame, segments[2].last_frame)


def test_only_complete_contiguous_segments_count(storage):
    checkpoints = SegmentCheckpoints(storage, JOB)
    assert checkpoints.resume(segments_total=3) is None
    for k in (0, 2):
        checkpoints.save(finished(k), Fraction(15))
    assert checkpoints.stored_count() == 1, "segment 2 is useless without segment 1"
    checkpoints.save(finished(1), Fraction(15))
    storage.delete_prefix(segment_key(JOB, 1, "png"))  # the upload of its last frame never finished
    assert checkpoints.stored_count() == 1


def test_a_fully_stored_job_renders_its_last_segment_again(storage):
    checkpoints = SegmentCheckpoints(storage, JOB)
    for k in range(2):
        checkpoints.save(finished(k), Fraction(15))
    assert checkpoints.resume(segments_total=2).start_segment == 1
    assert checkpoints.delete() == 4 and checkpoints.stored_count() == 0
