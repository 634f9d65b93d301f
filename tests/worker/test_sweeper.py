"""Orphaned running jobs (no live lease), and queued jobs whose message was lost, are sent to the
render queue again, once."""
from __future__ import annotations

import time
from datetime import timedelta

from service.jobs.fair_queue import FairQueue
from service.jobs.queue import RENDER_QUEUE, enqueue_render, make_celery
from service.jobs.record import JobStatus, utcnow
from tests.worker.fakes import store_job
from worker.broker_queue import BrokerQueue
from worker.lease import JobLease
from worker.render_job import Outcome, render_job
from worker.sweeper import Sweeper, claim_requeue, sweep, sweep_queued


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


def queued_since(jobs, storage, seconds_ago: float):
    job = store_job(jobs, storage)
    old = job.model_copy(update={"updated_at": utcnow() - timedelta(seconds=seconds_ago)})
    jobs.redis.set(f"{jobs.prefix}:job:{job.id}", old.model_dump_json())
    return job


def test_a_queued_job_whose_message_was_lost_is_sent_again(jobs, storage, redis_url):
    lost, waiting, starting = (queued_since(jobs, storage, 3600) for _ in range(3))
    fresh = queued_since(jobs, storage, 10)
    enqueue_render(make_celery(redis_url), waiting.id)  # still in the render queue: its turn will come
    assert JobLease(jobs.redis, jobs.prefix, starting.id, ttl_s=30).acquire()  # a worker is starting it
    queue, sent = BrokerQueue(jobs.redis, RENDER_QUEUE), []
    assert sweep_queued(jobs, sent.append, queue, stale_s=600) == [lost.id]
    assert sweep_queued(jobs, sent.append, queue, stale_s=600) == [], "sent once per stale period"
    assert sent == [lost.id] and jobs.get(fresh.id).status is JobStatus.QUEUED


def test_a_job_waiting_its_turn_in_a_key_list_is_not_lost(jobs, storage):
    # the fair dispatcher sends it when its key's turn comes, however long that takes
    lost, waiting = queued_since(jobs, storage, 3600), queued_since(jobs, storage, 3600)
    fair = FairQueue(jobs.redis, jobs.prefix)
    with jobs.redis.pipeline() as pipe:
        fair.add(pipe, waiting.owner, waiting.id, 0)
        pipe.execute()
    sent: list[str] = []
    assert sweep_queued(jobs, sent.append, BrokerQueue(jobs.redis, RENDER_QUEUE), stale_s=600) == [lost.id]


def test_the_queued_sweep_runs_every_third_of_the_stale_time(jobs, storage, redis_url):
    now = [0.0]
    sent: list[str] = []
    sweeper = Sweeper(jobs, sent.append, interval_s=1, claim_ttl_s=60, stale_s=300,
                      queue=BrokerQueue(jobs.redis, RENDER_QUEUE), clock=lambda: now[0])
    sweeper.run_once()
    lost = queued_since(jobs, storage, 3600)
    now[0] = 99.0
    sweeper.run_once()
    assert sent == [], "the last queued sweep was less than 100 s ago"
    now[0] = 100.0
    sweeper.run_once()
    assert sent == [lost.id]
