"""POST /animate: validate inputs, then create and enqueue a job."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.animate_request import AnimateJson, read_json, read_multipart
from service.api.auth import Owner
from service.api.idempotency import check_key
from service.api.problems import Problem, problem_responses
from service.api.state import AppState, State
from service.api.submit import submit
from service.inputs.checks import CheckedInput, InputError, check_image, check_keypoints, check_video
from service.jobs.params import RenderParams

router = APIRouter()
CHECKS = {"reference_image": check_image, "pose_video": check_video,
          "pose_keypoints": check_keypoints, "reference_keypoints": check_keypoints}

MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["reference_image"],
    "properties": {
        "reference_image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP"},
        "pose_video": {"type": "string", "format": "binary", "description": "skeleton or driving video"},
        "pose_keypoints": {"type": "string", "format": "binary",
                           "description": "JSON: OpenPose per-frame or DWPose bodies/hands/faces"},
        "reference_keypoints": {"type": "string", "format": "binary"},
        "params": {"type": "string", "description": "JSON object of RenderParams"},
        "webhook_url": {"type": "string"},
        "webhook_events": {"type": "string", "description": "comma-separated event names"},
    },
}
OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": MULTIPART_SCHEMA},
    "application/json": {"schema": AnimateJson.model_json_schema()},
}}}


def job_links(request: Request, job_id: str) -> dict[str, str]:
    return {"self": str(request.url_for("get_job", job_id=job_id)),
            "events": str(request.url_for("job_events", job_id=job_id)),
            "cancel": str(request.url_for("cancel_job", job_id=job_id)),
            "video": str(request.url_for("job_video", job_id=job_id))}


@router.post("/animate", status_code=202, openapi_extra=OPENAPI_BODY, tags=["jobs"],
             responses=problem_responses(400, 401, 409, 413, 415, 422, 503))
async def animate(request: Request, owner: Owner, state: State,
                  idempotency_key: Annotated[str | None, Header(description="same key + same body -> same job")]
                  = None) -> JSONResponse:
    """Submit an animation job. Answers 202 with the job id and links; poll or stream events."""
    if idempotency_key is not None:
        try:
            idempotency_key = check_key(idempotency_key)
        except ValueError as exc:
            raise Problem(422, "invalid-request", str(exc)) from exc
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with tempfile.TemporaryDirectory(prefix="unianimate-upload-") as tmp:
        if media_type == "multipart/form-data":
            submission = await read_multipart(request, Path(tmp), state.settings)
        elif media_type == "application/json":
            submission = await read_json(request, Path(tmp), state.settings)
        else:
            raise Problem(415, "unsupported-media-type", "send multipart/form-data (file uploads) or "
                                                         "application/json (https URLs)")
        checked = await run_in_threadpool(_check_all, submission.files, submission.params, state)
        done = await run_in_threadpool(submit, state, owner, checked, submission, idempotency_key)
    body = {"job_id": done.job.id, "status": done.job.status.value, "links": job_links(request, done.job.id)}
    headers = {"Location": body["links"]["self"]}
    if done.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def _check_all(files: dict[str, Path], params: RenderParams, state: AppState) -> list[CheckedInput]:
    try:
        checked = [CHECKS[name](name, path, state.limits) for name, path in files.items()]
    except InputError as exc:
        raise Problem(422, "invalid-input", str(exc), field=exc.field) from exc
    poses = next((item for item in checked if item.name == "pose_keypoints"), None)
    if poses is not None and poses.info["fps"] is None and params.fps is None:
        # the worker could not time the video: refuse now rather than fail the job later
        raise Problem(422, "invalid-input", 'pose_keypoints: the document does not say its frame rate: add "fps" '
                      '({"fps": 30, "frames": [...]}) or set params.fps', field="pose_keypoints")
    return checked
