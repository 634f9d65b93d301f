"""Turn a validated submission into a queued job: check the key's limits, store inputs, record the job.

The record is written in one transaction with the key's limits check and its place in the key's
fair waiting list (service.jobs.admission); a render worker's dispatcher sends it to the broker
in fair order (service.jobs.fair_queue). If any step fails, everything made so far is removed
(inputs, record, idempotency key) and the caller answers 503, or 429 when a limit refused the job:
a job either exists and waits for its turn, or does not exist.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.api.auth import limit_problem
from service.api.problems import Problem
from service.api.state import AppState
from service.inputs.checks import CheckedInput
from service.jobs.admission import admission
from service.jobs.key_limits import LimitExceeded
from service.jobs.record import Job
from service.jobs.store import JobNotFound
from service.storage.objects import input_key, job_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    job: Job
    replayed: bool  # True: an earlier request with the same Idempotency-Key made this job


def submit(state: AppState, owner: str, checked: list[CheckedInput], submission, idempotency_key: str | None,
           *, more_inputs: Callable[[str], dict[str, str]] | None = None, extra: dict[str, Any] | None = None
           ) -> Submitted:
    """`more_inputs(job_id)` adds inputs that are already in storage (a batch's shared motion, a
    re-render's copies: it may store objects under the new job's prefix); `extra` sets more record
    fields (`rerender_of`, `group_id`)."""
    job_id = uuid.uuid4().hex
    if idempotency_key is not None:
        earlier = _replay(state, owner, idempotency_key, submission.content_hash, job_id)
        if earlier is not None:
            return Submitted(earlier, replayed=True)
    try:
        # before storing anything (create checks again, exactly, inside its transaction)
        state.key_limits.check_submission(state.jobs.redis, owner)
        inputs = {item.name: state.storage.put_file(input_key(job_id, item.storage_name), item.path,
                                                    item.content_type).key for item in checked}
        inputs |= more_inputs(job_id) if more_inputs else {}
        job = state.jobs.create(job_id, owner, submission.params.with_seed(), inputs, submission.webhook,
                                extra=extra, admit=admission(state.key_limits, state.fair, owner, job_id))
    except BaseException as exc:
        _rollback(state, owner, job_id, idempotency_key)
        if isinstance(exc, LimitExceeded):
            raise limit_problem(exc) from None
        raise
    return Submitted(job, replayed=False)


def reserve_key(state: AppState, owner: str, key: str, content_hash: str, new_id: str) -> str | None:
    """Reserve the Idempotency-Key for `new_id`: None when it is fresh; for a repeat of the same
    request, the id the first one made (a job's, or a batch's group's); 422 for another request."""
    reservation = state.idempotency.reserve(owner, key, content_hash, new_id)
    if reservation.fresh:
        return None
    if reservation.content_hash != content_hash:
        raise Problem(422, "idempotency-key-reused", "this Idempotency-Key was used for a different request; "
                                                     "use a new key for a new request")
    return reservation.job_id


def request_in_progress() -> Problem:
    """The first request with the key has reserved it but not yet made what it names."""
    return Problem(409, "request-in-progress", "a request with this Idempotency-Key is still being "
                                               "processed; retry in a moment", headers={"Retry-After": "1"})


def _replay(state: AppState, owner: str, key: str, content_hash: str, job_id: str) -> Job | None:
    earlier = reserve_key(state, owner, key, content_hash, job_id)
    if earlier is None:
        return None
    try:
        return state.jobs.get(earlier)
    except JobNotFound:
        raise request_in_progress() from None


def _rollback(state: AppState, owner: str, job_id: str, idempotency_key: str | None) -> None:
    """Best effort: each step may fail for the same outage that caused the rollback."""
    steps = [lambda: state.jobs.discard(job_id),
             lambda: state.storage.delete_prefix(job_prefix(job_id))]
    if idempotency_key is not None:
        steps.append(lambda: state.idempotency.release(owner, idempotency_key, job_id))
    for step in steps:
        with contextlib.suppress(Exception):
            step()
