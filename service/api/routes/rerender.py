"""POST /jobs/{id}/rerender: a new job from a succeeded chain-mode job's segment k on, with a new seed.

The new job gets copies of its parent's inputs and of the parent's stored segments 0..k-1 (the
worker's resume checkpoints, worker/segment_store.py), so its worker "resumes" at segment k and the
frames before it are the parent's, bit for bit. Copies, not references: either job's objects can be
deleted without touching the other's. The parent's segments exist as long as its record does
(docs/api.md, "Re-render from a segment"); a re-render is refused once they are gone.
"""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.animate_request import Submission, read_json_document, webhook_from
from service.api.auth import Owner
from service.api.idempotency import ContentHasher, IdempotencyKey
from service.api.problems import Problem, problem_responses, validation_problem
from service.api.routes.animate import accepted
from service.api.routes.jobs import load_job
from service.api.state import AppState, State
from service.api.submit import submit
from service.jobs.params import SEED_MAX, RenderParams
from service.jobs.record import Job, JobStatus, RerenderOrigin
from service.jobs.views import JobAccepted
from service.storage.objects import ObjectNotFound, input_key, job_prefix, segment_key

router = APIRouter(tags=["jobs"])

# what the worker stores per finished segment (worker/segment_store.py: FRAMES_EXT, LAST_FRAME_EXT;
# the API may not import the worker, tests/service/test_rerender_api.py keeps the two the same)
SEGMENT_FILES = ("mkv", "png")
_SEGMENT_NAME = re.compile(r"^(\d{4})\.([a-z0-9]+)$")


class RerenderRequest(BaseModel):
    """Sampling params that leave the frame plan alone; everything else is the parent's."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    from_segment: int = Field(ge=0, description="the first segment rendered again (0-based)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="seed of segments from_segment..end; "
                             "chosen by the server when omitted")
    steps: int | None = Field(None, ge=1, le=200)
    guidance_scale: float | None = Field(None, ge=0.0, le=20.0)
    noise_prior_t: int | None = Field(None, ge=0, le=999)
    webhook_url: str | None = None
    webhook_events: list[str] | None = None

    def sampling(self) -> dict[str, Any]:
        """The sampling params to change besides the seed."""
        return {name: value for name in ("steps", "guidance_scale", "noise_prior_t")
                if (value := getattr(self, name)) is not None}


@router.post("/jobs/{job_id}/rerender", name="rerender_job", status_code=202, openapi_extra={
    "requestBody": {"required": True, "content": {"application/json": {"schema": RerenderRequest.model_json_schema()}}}},
             responses={202: {"model": JobAccepted, "description": "the new job, as POST /animate answers"},
                        **problem_responses(401, 404, 409, 413, 415, 422, 429, 503)})
async def rerender(job_id: str, request: Request, owner: Owner, state: State,
                   idempotency_key: IdempotencyKey) -> JSONResponse:
    """A new job that keeps the parent's frames before `from_segment` and renders the rest with a new seed.
    Answers 202 like POST /animate."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "unsupported-media-type", 'send application/json: {"from_segment": k, "seed": s}')
    document = await read_json_document(request, state.settings)
    try:
        body = RerenderRequest.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc.errors()) from exc
    parent = await run_in_threadpool(load_job, job_id, owner, state)
    webhook = await webhook_from(body.webhook_url, body.webhook_events, state.settings)
    params, origin = plan_rerender(parent, body)
    hasher = ContentHasher()
    hasher.json_field("rerender", {"parent": parent.id, "body": document})
    submission = Submission({}, params, webhook, hasher.hexdigest())
    done = await run_in_threadpool(
        submit, state, owner, [], submission, idempotency_key,
        more_inputs=lambda new_id: copy_parent(state, parent, new_id, origin.from_segment),
        extra={"rerender_of": origin})
    return accepted(request, done)


def plan_rerender(parent: Job, body: RerenderRequest) -> tuple[RenderParams, RerenderOrigin]:
    """The new job's params and seed plan; 409/422 saying what to fix when the parent cannot be re-rendered."""
    if parent.status is not JobStatus.SUCCEEDED:
        raise Problem(409, "cannot-rerender", f"job {parent.id} is {parent.status.value}; only a succeeded job "
                                              "can be re-rendered (wait for it, or submit it again)")
    if parent.params.long_video_mode != "chain":
        raise Problem(409, "cannot-rerender", f"job {parent.id} was rendered in {parent.params.long_video_mode} "
                                              "mode, where every frame depends on the whole video: there are no "
                                              "segments to keep. Re-rendering needs long_video_mode chain")
    total = parent.progress.segments_total
    if body.from_segment >= total:
        raise Problem(422, "invalid-request", f"from_segment: job {parent.id} has {total} segment(s), so "
                                              f"from_segment must be between 0 and {total - 1}",
                      errors=[{"field": "from_segment", "message": f"must be less than {total}"}])
    params = parent.params.model_copy(update={**body.sampling(), "seed": body.seed}).with_seed()
    if parent.rerender_of is None:
        base, changes = parent.params.seed or 0, []
    else:  # the parent's own changes before from_segment still hold for the segments it keeps
        base = parent.rerender_of.base_seed
        changes = [change for change in parent.rerender_of.seed_changes if change[0] < body.from_segment]
    origin = RerenderOrigin(parent_id=parent.id, from_segment=body.from_segment, base_seed=base,
                            seed_changes=[*changes, (body.from_segment, params.seed)])
    return params, origin


def copy_parent(state: AppState, parent: Job, new_id: str, from_segment: int) -> dict[str, str]:
    """Copies the parent's inputs and segments 0..from_segment-1 under the new job; returns its inputs.
    Runs inside submit(): a failure rolls the new job back, copies included."""
    segments = _stored_segments(state, parent)
    missing = [index for index in range(from_segment) if not set(SEGMENT_FILES) <= segments.get(index, set())]
    if missing:
        raise Problem(409, "cannot-rerender", f"segment(s) {missing} of job {parent.id} are no longer stored; "
                                              "re-render from segment 0, or submit the job again")
    for index in range(from_segment):
        for ext in SEGMENT_FILES:
            state.storage.copy(segment_key(parent.id, index, ext), segment_key(new_id, index, ext))
    inputs = {}
    for name, key in parent.inputs.items():
        inputs[name] = input_key(new_id, key.rsplit("/", 1)[-1])
        try:
            state.storage.copy(key, inputs[name])
        except ObjectNotFound:
            raise Problem(409, "cannot-rerender", f"the {name} input of job {parent.id} is no longer stored; "
                                                  "submit the job again") from None
    return inputs


def _stored_segments(state: AppState, parent: Job) -> dict[int, set[str]]:
    prefix = f"{job_prefix(parent.id)}segments/"
    found: dict[int, set[str]] = {}
    for key in state.storage.list(prefix):
        match = _SEGMENT_NAME.match(key.removeprefix(prefix))
        if match:
            found.setdefault(int(match[1]), set()).add(match[2])
    return found
