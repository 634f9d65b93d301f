"""Finds jobs whose worker died and sends them to the render queue again.

A job is orphaned when its record says `running` but nobody renews its lease. Redis would
hand back the dead worker's message only after the broker's visibility timeout (hours, so
that long jobs are never handed out twice), so each render worker's main process sweeps every
`sweep_every_s` and re-enqueues orphans itself. A claim key makes one sweeper (of many
workers) send each orphan once; the worker that takes the job up clears it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.job_model import JobStatus
from service.jobs import JobStore
from worker.lease import lease_alive

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


def claim_requeue(jobs: JobStore, job_id: str, ttl_s: int) -> bool:
    """Mark the job as sent to the queue again (by a sweeper, or by a run that failed and retries
    later); False if it already was. The worker that takes the job up clears the mark."""
    return bool(jobs.redis.set(_claim_key(jobs, job_id), "1", nx=True, ex=ttl_s))


def clear_requeue_claim(jobs: JobStore, job_id: str) -> None:
    """Called by the worker that took the job up: a later death may be swept again."""
    jobs.redis.delete(_claim_key(jobs, job_id))


class Sweeper:
    """Runs `sweep` every `interval_s` in a daemon thread until stopped."""

    def __init__(self, jobs: JobStore, enqueue: Callable[[str], None], *, interval_s: float,
                 claim_ttl_s: int) -> None:
        self.jobs = jobs
        self.enqueue = enqueue
        self.interval_s = interval_s
        self.claim_ttl_s = claim_ttl_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="orphan-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sweep(self.jobs, self.enqueue, self.claim_ttl_s)
            except Exception:  # Redis down or a bad record: log and try again next round
                log.exception("orphan sweep failed")
