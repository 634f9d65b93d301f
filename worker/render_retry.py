"""When and how the render task runs a message again instead of acknowledging it.

Two reasons: a run failed part way (`RetryRender`: again after RENDER_RETRY_DELAY_S, it resumes),
or the job could not be started (`NotStarted`: backing off up to the lease TTL, by when a lease
left by a run that never started has expired). While the retry is due, the sweepers leave the
job alone, but only for about that long: if the worker holding the retry dies, the message would
come back only after the broker's visibility timeout (hours), and the sweeper sends it sooner.
"""
from __future__ import annotations

import logging
import math
from typing import NoReturn

import redis
from celery import Task
from celery.exceptions import Reject

from service.jobs.store import JobStore
from worker.render_job import RetryRender
from worker.sweeper import claim_requeue

log = logging.getLogger(__name__)

RENDER_RETRY_DELAY_S = 5.0


def retry_countdown(exc: Exception, retries: int, lease_ttl_s: float) -> float:
    """Seconds until the retry; `retries` is how many this message had already."""
    if isinstance(exc, RetryRender):
        return RENDER_RETRY_DELAY_S
    return min(max(RENDER_RETRY_DELAY_S, lease_ttl_s), RENDER_RETRY_DELAY_S * 2 ** min(retries, 10))


def requeue_claim_ttl(countdown: float, lease_ttl_s: float) -> int:
    """How long the sweepers leave the job alone: the countdown, and a lease TTL for the retry to
    take the lease."""
    return math.ceil(countdown + lease_ttl_s)


def hold_off_sweepers(jobs: JobStore, job_id: str, ttl_s: int) -> None:
    try:
        claim_requeue(jobs, job_id, ttl_s)
    except redis.RedisError as exc:  # then a sweeper may send a second copy, which the lease makes harmless
        log.warning("job %s: could not mark its retry for the sweepers: %s", job_id, exc)


def retry_later(task: Task, exc: Exception, countdown: float) -> NoReturn:
    """Celery's retry; if it cannot publish the retry it would drop this message: put it back instead."""
    try:
        raise task.retry(exc=exc, countdown=countdown)
    except Reject as rejected:
        raise Reject(exc, requeue=True) from rejected
