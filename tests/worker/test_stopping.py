"""A render worker that is shutting down hands its job back at the next step (worker/stopping.py)."""
from __future__ import annotations

import threading

import pytest

from service.jobs.record import JobStatus
from tests.worker.fakes import StubRenderer, store_job
from worker import stopping
from worker.lease import lease_alive
from worker.render_job import Outcome, render_job


@pytest.fixture
def shutdown_flag(monkeypatch) -> threading.Event:
    """A fresh per-process flag, so a test's shutdown request does not leak into the next test."""
    flag = threading.Event()
    monkeypatch.setattr(stopping, "_requested", flag)
    return flag


def test_a_shutdown_hands_the_job_back_at_the_next_step_without_using_an_attempt(
        jobs, storage, make_context, shutdown_flag, monkeypatch):
    job = store_job(jobs, storage, seconds=2.0)  # 30 frames: 5 segments of 8
    renderer = StubRenderer(on_step=lambda done: done == 5 and stopping.request())  # during segment 2 (2 steps each)
    ctx = make_context(renderer, max_attempts=1)
    assert render_job(job.id, ctx) is Outcome.HANDED_BACK
    handed = jobs.get(job.id)
    assert renderer.steps_run == 5, "no denoising step runs after the request"
    assert handed.status is JobStatus.RUNNING and (handed.runs, handed.handbacks) == (1, 1)
    assert [s.done for s in handed.segments] == [True, True, False]
    assert not lease_alive(jobs.redis, jobs.prefix, job.id), "the lease is released for the next worker"

    monkeypatch.setattr(stopping, "_requested", threading.Event())  # the next worker is not shutting down
    assert render_job(job.id, make_context(StubRenderer(), max_attempts=1)) is Outcome.SUCCEEDED
    done = jobs.get(job.id)
    assert done.runs == 2 and [s.attempts for s in done.segments] == [1, 1, 2, 1, 1]


def test_a_process_that_is_shutting_down_takes_no_new_job(jobs, storage, make_context, shutdown_flag):
    job = store_job(jobs, storage)
    stopping.request()
    assert render_job(job.id, make_context()) is Outcome.HANDED_BACK
    assert jobs.get(job.id).status is JobStatus.QUEUED and jobs.get(job.id).runs == 0
