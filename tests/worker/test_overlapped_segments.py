"""The overlapped segment loop in the worker: a failure or a shutdown while segment k is being
finished in the background resumes where a serial run would, with the same frames."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from service.jobs.record import JobStatus
from service.storage.objects import StorageUnavailable, segment_key
from tests.worker.fakes import StubRenderer, store_job
from worker import stopping
from worker.render_job import Outcome, RetryRender, render_job
from worker.segment_store import SegmentCheckpoints


class FailingPut:
    """Storage whose put of one key runs `action` first, once (a failure or a shutdown request)."""

    def __init__(self, storage, key, action) -> None:
        self._storage, self._key, self._action = storage, key, action

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def put_bytes(self, key, data, content_type="application/octet-stream"):
        if key == self._key and self._action is not None:
            action, self._action = self._action, None
            action()
        return self._storage.put_bytes(key, data, content_type)


def frames_of(storage, job_id):
    return np.concatenate(list(SegmentCheckpoints(storage, job_id).frames(5)))


@pytest.fixture
def uninterrupted(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)  # 30 frames: 5 segments
    assert render_job(job.id, make_context(keep_segments=True, overlap_segments=False)) is Outcome.SUCCEEDED
    return frames_of(storage, job.id)


def test_a_storage_failure_in_the_background_stage_of_segment_k_resumes_at_k(jobs, storage, make_context,
                                                                            uninterrupted):
    job = store_job(jobs, storage, seconds=2.0, fps=15)

    def fail():
        raise StorageUnavailable("object storage went away")

    ctx = make_context(StubRenderer(step_delay_s=0.2), keep_segments=True, overlap_segments=True)
    flaky = dataclasses.replace(ctx, storage=FailingPut(storage, segment_key(job.id, 2, "png"), fail))
    with pytest.raises(RetryRender, match="object storage went away"):
        render_job(job.id, flaky)
    assert SegmentCheckpoints(storage, job.id).stored_count() == 2, "segment 2 is not stored, so not done"
    assert jobs.get(job.id).status is JobStatus.RUNNING

    again = StubRenderer()
    assert render_job(job.id, make_context(again, keep_segments=True, overlap_segments=True)) is Outcome.SUCCEEDED
    assert len(again.segment_seeds) == 3, "the next run starts at segment 2"
    assert np.array_equal(frames_of(storage, job.id), uninterrupted)
    done = jobs.get(job.id)
    assert done.result.frames == 30 and [s.done for s in done.segments] == [True] * 5


def test_a_shutdown_while_segment_k_is_stored_hands_back_after_k(jobs, storage, make_context, monkeypatch,
                                                                uninterrupted):
    monkeypatch.setattr(stopping, "_requested", threading.Event())
    job = store_job(jobs, storage, seconds=2.0, fps=15)
    ctx = make_context(StubRenderer(step_delay_s=0.2), keep_segments=True, overlap_segments=True)
    stopping_ctx = dataclasses.replace(ctx, storage=FailingPut(storage, segment_key(job.id, 1, "mkv"),
                                                               stopping.request))
    assert render_job(job.id, stopping_ctx) is Outcome.HANDED_BACK
    # segment 1 was being stored when the shutdown came: it is finished and stored, nothing after it
    assert SegmentCheckpoints(storage, job.id).stored_count() == 2

    monkeypatch.setattr(stopping, "_requested", threading.Event())
    again = StubRenderer()
    assert render_job(job.id, make_context(again, keep_segments=True, overlap_segments=True)) is Outcome.SUCCEEDED
    assert len(again.segment_seeds) == 3
    assert np.array_equal(frames_of(storage, job.id), uninterrupted)


def test_a_cancel_while_segment_k_is_stored_ends_the_job_canceled(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)
    ctx = make_context(StubRenderer(step_delay_s=0.2), keep_segments=True, overlap_segments=True)
    canceling = dataclasses.replace(ctx, storage=FailingPut(storage, segment_key(job.id, 1, "mkv"),
                                                            lambda: jobs.request_cancel(job.id)))
    assert render_job(job.id, canceling) is Outcome.CANCELED
    assert jobs.get(job.id).status is JobStatus.CANCELED
    assert SegmentCheckpoints(storage, job.id).stored_count() == 2, "the segment in flight was stored whole"
