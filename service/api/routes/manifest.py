"""GET /jobs/{id}/manifest: the reproducibility manifest of a succeeded job (worker/manifest.py)."""
from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.auth import Owner
from service.api.problems import Problem, problem_responses
from service.api.routes.jobs import load_job
from service.api.state import State
from service.storage.objects import ObjectNotFound

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{job_id}/manifest", name="job_manifest",
            responses={200: {"description": "manifest.json: everything that produced the video"},
                       **problem_responses(401, 404, 409, 503)})
def job_manifest(job_id: str, owner: Owner, state: State) -> JSONResponse:
    """What produced the video: weights, params as applied, seeds per segment, inputs' sha256, versions.
    `unianimate reproduce` renders the same frames from it."""
    job = load_job(job_id, owner, state)
    if job.result is None or job.result.manifest_key is None:
        raise Problem(409, "not-ready", f"job {job_id} is {job.status.value} and has no manifest; "
                                        "a job has one once it succeeded")
    try:
        data = state.storage.get_bytes(job.result.manifest_key)
    except ObjectNotFound:
        raise Problem(404, "not-found", f"the manifest of job {job_id} is no longer in storage") from None
    return JSONResponse(json.loads(data))
