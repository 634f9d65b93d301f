"""Orphaned running jobs (no live lease) are sent to the render queue again, once."""
from __future__ import annotations

import time

from service.job_model import JobStatus
from tests.worker.fakes import store_job
from worker.lease import JobLease
from worker.render_job import Outcome, render_job
from worker.sweeper import Sweeper, claim_requeue, sweep


def test_only_running_jobs_without_a_lease_are_sent_again(jobs, storage):
    orphan, alive, queued = (store_job(jobs, storage) for _ in range(3))
    for job in (orphan, alive):
        jobs.transition(job.id, JobStatus.RUNNING, worker="w")
    assert JobLease(jobs.redis, jobs.prefix, alive.id, ttl_s=30).acquire()
    sent: list[str] = []
    assert sweep(jobs, sent.append, claim_ttl_s=60) == [orphan.id]
    assert sweep(jobs, sent.append, claim_ttl_s=60) == [], "an orphan already sent waits to be taken up"
    assert sent == [orphan.id] and jobs.get(queued.id).status is JobStatus.QUEUED


def test_a_failed_run_waiting_for_its_retry_is_not_sent_again(jobs, storage):
    job = store_job(jobs, storage)
    jobs.transition(job.id, JobStatus.RUNNING, worker="w")
    assert claim_requeue(jobs, job.id, ttl_s=60)  # what the render task does before Celery's delayed retry
    sent: list[str] = []
    assert sweep(jobs, sent.append, claim_ttl_s=60) == [] and sent == []


def test_a_worker_taking_the_job_up_allows_a_later_sweep(jobs, storage, make_context):
    job = store_job(jobs, storage)
    jobs.transition(job.id, JobStatus.RUNNING, worker="died")
    sent: list[str] = []
    sweep(jobs, sent.append, claim_ttl_s=60)
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    assert sweep(jobs, sent.append, claim_ttl_s=60) == [] and sent == [job.id]
    other = store_job(jobs, storage)
    jobs.transition(other.id, JobStatus.RUNNING, worker="died")
    assert sweep(jobs, sent.append, claim_ttl_s=60) == [other.id]


def test_the_sweeper_thread_runs_until_stopped(jobs, storage):
    job = store_job(jobs, storage)
    jobs.transition(job.id, JobStatus.RUNNING, worker="died")
    sent: list[str] = []
    sweeper = Sweeper(jobs, sent.append, interval_s=0.05, claim_ttl_s=60)
    sweeper.start()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.02)
    sweeper.stop()
    assert sent == [job.id]
