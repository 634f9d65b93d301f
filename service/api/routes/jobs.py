"""GET /jobs/{id}, POST /jobs/{id}/cancel, GET /jobs/{id}/video."""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from service.api.auth import Owner, authenticated_key, limit_problem
from service.api.problems import Problem, problem_responses
from service.api.routes.animate import job_links
from service.api.state import AppState, State, app_state
from service.jobs.groups import announce_group_if_complete
from service.jobs.key_limits import LimitExceeded
from service.jobs.record import Job, JobStatus, is_current, public_view
from service.jobs.store import JobNotFound
from service.jobs.views import JobView
from service.storage.objects import is_job_id

router = APIRouter(tags=["jobs"])


def load_job(job_id: str, owner: str, state: AppState) -> Job:
    """The job if it exists and belongs to the caller; otherwise 404 (never 403: ids do not leak)."""
    try:
        job = state.jobs.get(job_id) if is_job_id(job_id) else None
    except JobNotFound:
        job = None
    if job is None or job.owner != owner:
        raise Problem(404, "not-found", f"no job {job_id!r} for this API key")
    return job


def job_view(request: Request, job: Job, state: AppState) -> dict[str, Any]:
    return document_view(request, job.model_dump(mode="json"), state)


def document_view(request: Request, doc: dict[str, Any], state: AppState) -> dict[str, Any]:
    """The response body for a job's JSON document (as stored, or dumped from a Job)."""
    url = None
    if doc["result"] is not None:
        url = state.storage.presigned_url(doc["result"]["key"], state.settings.presign_ttl_s) or str(
            request.url_for("job_video", job_id=doc["id"]))
    links = job_links(request, doc["id"])
    body = public_view(doc, url)
    if any(entry["done"] for entry in doc["segments"]):
        # the playlist route sits under the job's own URL (service/api/routes/live.py); building it
        # from `self` spares a route walk per status read
        body["live_url"] = links["self"] + "/live.m3u8"
    return body | {"links": links}


@router.get("/jobs/{job_id}", name="get_job",
            responses={200: {"model": JobView, "description": "the job"},
                       **problem_responses(401, 404, 503)})
async def get_job(job_id: str, request: Request) -> Response:
    """Status, progress, timestamps, params, result (with a video URL) or error."""
    # One Redis round trip (rate-limit token + record + queue position), no thread hop, no
    # FastAPI dependencies (solving them cost more than the rest), and the stored JSON is shown
    # without validating it into a Job when it has every current field.
    owner = await authenticated_key(request)
    state = app_state(request)
    try:
        read = await state.fast_reads().read_job(owner, job_id if is_job_id(job_id) else "-")
    except LimitExceeded as exc:
        raise limit_problem(exc) from None
    doc = json.loads(read.raw) if read.raw is not None else None
    if doc is None or doc.get("owner") != owner:
        raise Problem(404, "not-found", f"no job {job_id!r} for this API key")
    if not is_current(doc):  # written before a field was added: validation fills in its default
        doc = Job.model_validate(doc).model_dump(mode="json")
    body = document_view(request, doc, state)
    if read.jobs_ahead is not None and doc["status"] == JobStatus.QUEUED.value:
        body["queue_position"] = read.jobs_ahead
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                    media_type="application/json")


@router.post("/jobs/{job_id}/cancel", name="cancel_job", status_code=202,
             responses={202: {"model": JobView, "description": "the job, canceled or about to be"},
                        **problem_responses(401, 404, 409, 503)})
def cancel_job(job_id: str, request: Request, owner: Owner,
               state: State) -> JSONResponse:
    """Queued jobs are canceled at once; running jobs stop between denoising steps."""
    before = load_job(job_id, owner, state)
    job = state.jobs.request_cancel(job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise Problem(409, "job-finished", f"job {job_id} already {job.status.value}; nothing to cancel")
    if before.status is JobStatus.QUEUED and job.status is JobStatus.CANCELED:
        # No worker ever sees this job, so the terminal webhook is the API's to send.
        state.outbox.emit(job, "job.canceled")
        announce_group_if_complete(state.jobs, state.outbox, job)  # it may be its batch's last member
        state.fair.forget(owner, job_id)  # out of the queue positions now (the dispatcher would drop it too)
    return JSONResponse(job_view(request, job, state), status_code=202)


@router.get("/jobs/{job_id}/video", name="job_video", status_code=302,
            responses={200: {"content": {"video/mp4": {}}, "description": "the MP4 (local storage)"},
                       302: {"description": "redirect to a presigned URL"},
                       **problem_responses(401, 404, 409, 503)})
def job_video(job_id: str, owner: Owner, state: State) -> Response:
    """Redirects to the video in object storage, or serves it when storage is a local directory."""
    job = load_job(job_id, owner, state)
    if job.status is not JobStatus.SUCCEEDED or job.result is None:
        raise Problem(409, "not-ready", f"job {job_id} is {job.status.value}; the video exists once it succeeded")
    url = state.storage.presigned_url(job.result.key, state.settings.presign_ttl_s)
    if url is not None:
        return RedirectResponse(url, status_code=302)
    path = state.storage.local_path(job.result.key)
    if path is None:
        raise Problem(404, "not-found", f"the video of job {job_id} is no longer in storage")
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")
