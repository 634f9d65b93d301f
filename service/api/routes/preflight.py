"""POST /animate/preflight: check a submission before paying for GPU time (no job is created);
GET /previews/{id}/{name}: its aligned-skeleton preview, kept for `preview_retention_s`."""
from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service.api.animate_request import read_body
from service.api.auth import Owner
from service.api.problems import Problem, problem_responses
from service.api.routes.animate import OPENAPI_BODY, check_inputs
from service.api.state import AppState, State
from service.preflight.previews import CLIP, CONTENT_TYPES, STRIP, PreviewStore
from service.preflight.run import run_preflight
from service.storage.objects import is_job_id, preview_key

router = APIRouter(tags=["preflight"])


def previews(state: AppState) -> PreviewStore:
    return PreviewStore(state.storage, state.jobs.redis, state.jobs.prefix, state.settings.preview_retention_s)


@router.post("/animate/preflight", name="preflight", openapi_extra=OPENAPI_BODY,
             responses=problem_responses(400, 401, 413, 415, 422, 503))
async def animate_preflight(request: Request, owner: Owner, state: State) -> JSONResponse:
    """The inputs and params of POST /animate, checked without creating a job: the pose report, the
    segment plan, GPU time and memory per worker class, and links to an aligned-skeleton preview."""
    with tempfile.TemporaryDirectory(prefix="unianimate-preflight-") as tmp:
        submission = await read_body(request, Path(tmp), state.settings)
        await run_in_threadpool(check_inputs, submission.files, submission.params, state)
        try:
            report, preview = await run_in_threadpool(run_preflight, submission.files, submission.params,
                                                      previews(state), state.settings.worker_classes)
        except ValueError as exc:  # PoseInputError: what the worker would fail the job with
            raise Problem(422, "invalid-input", str(exc)) from exc
    body = {"params": submission.params.model_dump(mode="json"), **report, "preview": None}
    if preview is not None:
        body["preview"] = {
            "id": preview.id,
            "expires_at": datetime.fromtimestamp(preview.expires_at, UTC).isoformat(),
            "strip_url": str(request.url_for("preview_file", preview_id=preview.id, name=STRIP)),
            "clip_url": str(request.url_for("preview_file", preview_id=preview.id, name=CLIP)),
        }
    return JSONResponse(body)


@router.get("/previews/{preview_id}/{name}", name="preview_file", status_code=200,
            responses={200: {"content": {"image/png": {}, "video/mp4": {}}, "description": "the preview file"},
                       302: {"description": "redirect to a presigned URL"}, **problem_responses(404, 503)})
def preview_file(preview_id: str, name: str, state: State) -> Response:
    """No API key: the random id is the capability (an <img> cannot send a bearer header)."""
    if not is_job_id(preview_id) or name not in CONTENT_TYPES or not previews(state).alive(preview_id):
        raise Problem(404, "not-found", f"no preview {preview_id}/{name}; previews are kept "
                                        f"{state.settings.preview_retention_s} s: run the preflight again")
    key = preview_key(preview_id, name)
    url = state.storage.presigned_url(key, min(state.settings.presign_ttl_s, state.settings.preview_retention_s))
    if url is not None:
        return RedirectResponse(url, status_code=302)
    path = state.storage.local_path(key)
    if path is None or not path.exists():
        raise Problem(404, "not-found", f"preview {preview_id}/{name} is no longer in storage")
    return FileResponse(path, media_type=CONTENT_TYPES[name])
