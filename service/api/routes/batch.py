"""POST /animate/batch: one motion, several references -> one job per reference, in one group.

The motion is checked once and stored once, under the first job's inputs; the other jobs' records
name that same object (nothing deletes a single member's inputs: a batch is created or rolled back
whole, and the bucket's lifecycle rule expires all of them together). Each job is made by
`service.api.submit.submit`, as for POST /animate. All or nothing: the key's limits are checked for
the whole count first, and a member that fails undoes the members made before it. The group record
is written last; whoever finishes the group's last member sends `group.completed`
(service/jobs/groups.py), and the API looks once after writing the record, in case every member
was already final by then.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.animate_request import Submission
from service.api.auth import Owner, limit_problem
from service.api.batch_request import AnimateBatchJson, Batch, read_batch
from service.api.idempotency import IdempotencyKey
from service.api.problems import Problem, problem_responses
from service.api.routes.animate import MULTIPART_SCHEMA, check_inputs, job_links
from service.api.state import AppState, State
from service.api.submit import request_in_progress, reserve_key, submit
from service.inputs.checks import CheckedInput
from service.jobs.groups import Group, GroupNotFound, GroupStore, announce_group_if_complete
from service.jobs.key_limits import LimitExceeded
from service.jobs.record import Job
from service.jobs.store import IllegalTransition
from service.jobs.views import BatchAccepted
from service.storage.objects import job_prefix

log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])

_BATCH_MULTIPART = {**MULTIPART_SCHEMA, "properties": {
    **MULTIPART_SCHEMA["properties"],
    "reference_image": {"type": "array", "items": {"type": "string", "format": "binary"},
                        "description": "repeated: one job per reference image"},
    "reference_keypoints": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "repeated in the order of reference_image, or left out"}}}
OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _BATCH_MULTIPART},
    "application/json": {"schema": AnimateBatchJson.model_json_schema()}}}}


@router.post("/animate/batch", name="animate_batch", status_code=202, openapi_extra=OPENAPI_BODY,
             responses={202: {"model": BatchAccepted, "description": "the group and its jobs"},
                        **problem_responses(400, 401, 409, 413, 415, 422, 429, 503)})
async def animate_batch(request: Request, owner: Owner, state: State,
                        idempotency_key: IdempotencyKey) -> JSONResponse:
    """One job per reference image, all driven by the same motion; answers 202 with the group id and
    the job ids in the order of the references."""
    with tempfile.TemporaryDirectory(prefix="unianimate-batch-") as tmp:
        batch = await read_batch(request, Path(tmp), state.settings)
        batch.params = batch.params.with_seed()  # one seed for the whole batch
        checked = await run_in_threadpool(check_batch, batch, state)
        group, members, replayed = await run_in_threadpool(submit_batch, state, owner, batch, checked,
                                                           idempotency_key)
    body = {"group_id": group.id, "status": "queued",
            "jobs": [{"job_id": job.id, "status": job.status.value, "links": job_links(request, job.id)}
                     for job in members],
            "links": {"self": str(request.url_for("get_group", group_id=group.id))}}
    headers = {"Location": body["links"]["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def check_batch(batch: Batch, state: AppState) -> list[list[CheckedInput]]:
    """The checks of POST /animate: the motion once (with the first reference), then each reference."""
    checked = []
    for index, reference in enumerate(batch.references):
        files = {**reference, **(batch.motion if index == 0 else {})}
        try:
            checked.append(check_inputs(files, batch.params, state))
        except Problem as exc:
            if exc.extensions.get("field") in batch.motion:
                raise
            raise Problem(exc.status, exc.slug, f"reference {index}: {exc.detail}", **exc.extensions) from exc
    return checked


def submit_batch(state: AppState, owner: str, batch: Batch, checked: list[list[CheckedInput]],
                 idempotency_key: str | None) -> tuple[Group, list[Job], bool]:
    """Creates every member and then the group, or nothing; returns (group, members, replayed)."""
    group_id = uuid.uuid4().hex
    if idempotency_key is not None:
        earlier = _replay(state, owner, idempotency_key, batch.content_hash, group_id)
        if earlier is not None:
            return earlier[0], earlier[1], True
    members: list[Job] = []
    try:
        state.key_limits.check_submission(state.jobs.redis, owner, adding=len(checked))
        for index, inputs in enumerate(checked):
            shared = {} if index == 0 else {name: members[0].inputs[name] for name in batch.motion}
            submission = Submission({}, batch.params, batch.webhook, batch.content_hash)
            members.append(submit(state, owner, inputs, submission, None, more_inputs=lambda _id, s=shared: s,
                                  extra={"group_id": group_id}).job)
        group = GroupStore(state.jobs).create(Group(id=group_id, owner=owner, job_ids=[job.id for job in members],
                                                    webhook=batch.webhook))
    except BaseException as exc:
        _rollback(state, owner, members, idempotency_key, group_id)
        if isinstance(exc, LimitExceeded):
            raise limit_problem(exc) from None
        raise
    _announce_if_already_complete(state, members)
    return group, members, False


def _replay(state: AppState, owner: str, key: str, content_hash: str, group_id: str
            ) -> tuple[Group, list[Job]] | None:
    earlier = reserve_key(state, owner, key, content_hash, group_id)
    if earlier is None:
        return None
    store = GroupStore(state.jobs)
    try:
        group = store.get(earlier)
    except GroupNotFound:
        raise request_in_progress() from None
    return group, [job for job in store.members(group) if job is not None]


def _rollback(state: AppState, owner: str, members: list[Job], idempotency_key: str | None, group_id: str) -> None:
    """Best effort, like submit's: a member a worker already started is canceled instead. The first
    member's objects hold the motion every member reads: they go last, and stay while any member
    could not be removed (its worker must still find its inputs to end it as canceled)."""
    kept_any = False
    for job in [*members[1:], *members[:1]]:
        try:
            state.jobs.discard(job.id)
            if job is not members[0] or not kept_any:
                state.storage.delete_prefix(job_prefix(job.id))
        except IllegalTransition:
            kept_any = True
            with contextlib.suppress(Exception):
                state.jobs.request_cancel(job.id)
        except Exception as exc:  # noqa: BLE001  (the outage that caused the rollback)
            kept_any = True
            log.warning("batch rollback: job %s could not be removed: %s", job.id, exc)
        with contextlib.suppress(Exception):
            state.fair.forget(owner, job.id)
    if idempotency_key is not None:
        with contextlib.suppress(Exception):
            state.idempotency.release(owner, idempotency_key, group_id)


def _announce_if_already_complete(state: AppState, members: list[Job]) -> None:
    """Members that finished before the group record existed could not announce it: look once (it is
    complete only if the last member is final too; the outbox's claim keeps the event single)."""
    try:
        announce_group_if_complete(state.jobs, state.outbox, state.jobs.get(members[-1].id))
    except Exception as exc:  # noqa: BLE001  (the jobs are made; the last member to finish announces)
        log.warning("group of job %s: could not look whether it is complete: %s", members[-1].id, exc)


def group_view(request: Request, summary: dict[str, Any]) -> dict[str, Any]:
    """A group summary (service/jobs/groups.py) with the links of the group and of each member."""
    for entry in summary["jobs"]:
        entry["links"] = job_links(request, entry["job_id"])
    return summary | {"links": {"self": str(request.url_for("get_group", group_id=summary["group_id"]))}}
