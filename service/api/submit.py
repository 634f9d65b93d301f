"""Turn a validated submission into a queued job: store inputs, record the job, enqueue it.

If any step fails, everything made so far is removed (inputs, record, idempotency key) and
the caller answers 503: a job either exists and is queued on the broker, or does not exist.
A broker that took the message but timed out answering can still deliver a job id that has
been rolled back; the worker must ignore ids it cannot find (JobNotFound).
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass

from service.api.problems import Problem
from service.api.state import AppState
from service.inputs.checks import CheckedInput
from service.jobs.queue import EnqueueFailed, enqueue_render
from service.jobs.record import Job
from service.jobs.store import JobNotFound
from service.storage.objects import input_key, job_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    job: Job
    replayed: bool  # True: an earlier request with the same Idempotency-Key made this job


def submit(state: AppState, owner: str, checked: list[CheckedInput], submission, idempotency_key: str | None
           ) -> Submitted:
    job_id = uuid.uuid4().hex
    if idempotency_key is not None:
        earlier = _replay(state, owner, idempotency_key, submission.content_hash, job_id)
        if earlier is not None:
            return Submitted(earlier, replayed=True)
    try:
        inputs = {item.name: state.storage.put_file(input_key(job_id, item.storage_name), item.path,
                                                    item.content_type).key for item in checked}
        job = state.jobs.create(job_id, owner, submission.params.with_seed(), inputs, submission.webhook)
        enqueue_render(state.celery, job_id)
    except BaseException as exc:
        _rollback(state, owner, job_id, idempotency_key)
        if isinstance(exc, EnqueueFailed):
            log.warning("%s", exc)
            raise Problem(503, "unavailable", "the job queue is unreachable; nothing was created, retry later",
                          headers={"Retry-After": "5"}) from exc
        raise
    return Submitted(job, replayed=False)


def _replay(state: AppState, owner: str, key: str, content_hash: str, job_id: str) -> Job | None:
    reservation = state.idempotency.reserve(owner, key, content_hash, job_id)
    if reservation.fresh:
        return None
    if reservation.content_hash != content_hash:
        raise Problem(422, "idempotency-key-reused", "this Idempotency-Key was used for a different request; "
                                                     "use a new key for a new request")
    try:
        return state.jobs.get(reservation.job_id)
    except JobNotFound:
        raise Problem(409, "request-in-progress", "a request with this Idempotency-Key is still being "
                                                  "processed; retry in a moment",
                      headers={"Retry-After": "1"}) from None


def _rollback(state: AppState, owner: str, job_id: str, idempotency_key: str | None) -> None:
    """Best effort: each step may fail for the same outage that caused the rollback."""
    steps = [lambda: state.jobs.discard(job_id),
             lambda: state.storage.delete_prefix(job_prefix(job_id))]
    if idempotency_key is not None:
        steps.append(lambda: state.idempotency.release(owner, idempotency_key, job_id))
    for step in steps:
        with contextlib.suppress(Exception):
            step()
