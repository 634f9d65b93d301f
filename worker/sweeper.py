"""Finds jobs whose worker died, or whose message was lost, and sends them to the render queue again.

A job is orphaned when its record says `running` but nobody renews its lease. Redis would
hand back the dead worker's message only after the broker's visibility timeout (hours, so
that long jobs are never handed out twice), so each render worker's main process sweeps every
`sweep_every_s` and re-enqueues orphans itself. A claim key makes one sweeper (of many
workers) send each orphan once; the worker that takes the job up clears it.

A `queued` job has no lease to watch; its message can still be lost (a broker error while a
retry was published, a worker that died holding a retry's countdown, Redis losing its last
writes). Less often (`stale_s / 3`), the sweeper looks for jobs queued longer than `stale_s`
with no message for them waiting in the render queue, and enqueues those again. Jobs waiting for
their turn in a key's fair list (service.jobs.fair_queue) are not lost, only waiting: the fair
dispatcher sends those, and its own grace period covers one it released but never sent. A copy
too many is harmless: the lease and the job's status make it do nothing.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from service.jobs.fair_queue import FairQueue
from service.jobs.record import JobStatus, utcnow
from service.jobs.store import JobNotFound, JobStore
from worker.broker_queue import BrokerQueue
from worker.lease import lease_alive
from worker.periodic import Periodic

log = logging.getLogger(__name__)


def _claim_key(jobs: JobStore, job_id: str) -> str:
    return f"{jobs.prefix}:requeued:{job_id}"


def sweep(jobs: JobStore, enqueue: Callable[[str], None], claim_ttl_s: int) -> list[str]:
    """Re-enqueue every orphaned running job not already re-enqueued; returns their ids."""
    sent = []
    for job_id in jobs.ids_with_status(JobStatus.RUNNING):
        if lease_alive(jobs.redis, jobs.prefix, job_id):
            continue
        if not claim_requeue(jobs, job_id, claim_ttl_s):
            continue  # already sent and not yet taken up
        log.warning("job %s is running but its worker is gone: enqueued again", job_id)
        enqueue(job_id)
        sent.append(job_id)
    return sent


def sweep_queued(jobs: JobStore, enqueue: Callable[[str], None], queue: BrokerQueue, stale_s: float) -> list[str]:
    """Re-enqueue jobs queued for more than `stale_s` that no waiting message names; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=stale_s)
    stale = [job_id for job_id in jobs.ids_with_status(JobStatus.QUEUED) if _queued_before(jobs, job_id, cutoff)]
    if stale:  # those waiting their turn in a key's list are the dispatcher's
        held = FairQueue(jobs.redis, jobs.prefix).waiting_ids()
        stale = [job_id for job_id in stale if job_id not in held]
    if not stale:
        return []
    waiting = queue.waiting(stale)
    sent = []
    for job_id in stale:
        if job_id in waiting or lease_alive(jobs.redis, jobs.prefix, job_id):
            continue
        if not claim_requeue(jobs, job_id, max(1, round(stale_s))):
            continue  # sent within the last stale_s, or a retry of it is due (the render task's claim)
        log.warning("job %s has been queued for over %g s and no message for it is waiting: enqueued again",
                    job_id, stale_s)
        enqueue(job_id)
        sent.append(job_id)
    return sent


def _queued_before(jobs: JobStore, job_id: str, cutoff) -> bool:
    try:
        job = jobs.get(job_id)
    except JobNotFound:  # discarded since the set was read
        return False
    return job.status is JobStatus.QUEUED and job.updated_at < cutoff


def claim_requeue(jobs: JobStore, job_id: str, ttl_s: int) -> bool:
    """Mark the job as sent to the queue again (by a sweeper, or by a run that failed and retries
    later); False if it already was. The worker that takes the job up clears the mark."""
    return bool(jobs.redis.set(_claim_key(jobs, job_id), "1", nx=True, ex=ttl_s))


def clear_requeue_claim(jobs: JobStore, job_id: str) -> None:
    """Called by the worker that took the job up: a later death may be swept again."""
    jobs.redis.delete(_claim_key(jobs, job_id))


class Sweeper(Periodic):
    """Runs `sweep` every `interval_s` in a daemon thread until stopped, and `sweep_queued` every
    `stale_s / 3` when given the broker's render queue."""

    def __init__(self, jobs: JobStore, enqueue: Callable[[str], None], *, interval_s: float, claim_ttl_s: int,
                 queue: BrokerQueue | None = None, stale_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("orphan-sweeper", interval_s, self.run_once)
        self.jobs = jobs
        self.enqueue = enqueue
        self.claim_ttl_s = claim_ttl_s
        self.queue = queue
        self.stale_s = stale_s
        self.clock = clock
        self._queued_swept_at: float | None = None

    def run_once(self) -> None:
        sweep(self.jobs, self.enqueue, self.claim_ttl_s)
        now = self.clock()
        if self.queue is None or (self._queued_swept_at is not None and now - self._queued_swept_at < self.stale_s / 3):
            return
        self._queued_swept_at = now
        sweep_queued(self.jobs, self.enqueue, self.queue, self.stale_s)
