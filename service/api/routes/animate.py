"""POST /animate: validate inputs, then create and enqueue a job."""
from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.animate_request import AnimateJson, read_body
from service.api.auth import Owner
from service.api.idempotency import IdempotencyKey
from service.api.problems import Problem, problem_responses
from service.api.state import AppState, State
from service.api.submit import Submitted, submit
from service.inputs.checks import CheckedInput, InputError, check_image, check_keypoints, check_video
from service.jobs.params import RenderParams
from service.preflight.estimate import frame_size, unfit_reason

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


LINK_ROUTES = {"self": "get_job", "events": "job_events", "cancel": "cancel_job", "video": "job_video"}
_PLACEHOLDER = "0job0id0"  # not a job id (is_job_id needs 32 hex digits); replaced by the real one
_link_templates: dict[tuple, dict[str, str]] = {}


def job_links(request: Request, job_id: str) -> dict[str, str]:
    """The job's URLs. Building a URL walks the routes (most of a status read's cost once), so each
    is built once per base URL (scheme, Host, root path) with a placeholder id."""
    base = (request.scope.get("scheme"), request.headers.get("host"), tuple(request.scope.get("server") or ()),
            request.scope.get("root_path", ""))
    templates = _link_templates.get(base)
    if templates is None:
        if len(_link_templates) > 64:  # the Host header is the client's to choose: stay bounded
            _link_templates.clear()
        templates = _link_templates[base] = {
            name: str(request.url_for(route, job_id=_PLACEHOLDER)) for name, route in LINK_ROUTES.items()}
    return {name: template.replace(_PLACEHOLDER, job_id) for name, template in templates.items()}


@router.post("/animate", status_code=202, openapi_extra=OPENAPI_BODY, tags=["jobs"],
             responses=problem_responses(400, 401, 409, 413, 415, 422, 503))
async def animate(request: Request, owner: Owner, state: State, idempotency_key: IdempotencyKey) -> JSONResponse:
    """Submit an animation job. Answers 202 with the job id and links; poll or stream events."""
    with tempfile.TemporaryDirectory(prefix="unianimate-upload-") as tmp:
        submission = await read_body(request, Path(tmp), state.settings)
        checked = await run_in_threadpool(check_inputs, submission.files, submission.params, state)
        done = await run_in_threadpool(submit, state, owner, checked, submission, idempotency_key)
    return accepted(request, done)


def accepted(request: Request, done: Submitted) -> JSONResponse:
    """The 202 of a new job (POST /animate, POST /jobs/{id}/rerender)."""
    body = {"job_id": done.job.id, "status": done.job.status.value, "links": job_links(request, done.job.id)}
    headers = {"Location": body["links"]["self"]}
    if done.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


def check_inputs(files: dict[str, Path], params: RenderParams, state: AppState) -> list[CheckedInput]:
    try:
        checked = [CHECKS[name](name, path, state.limits, **_canvas(name, params, files, state))
                   if name.endswith("_keypoints") else CHECKS[name](name, path, state.limits)
                   for name, path in files.items()]
    except InputError as exc:
        raise Problem(422, "invalid-input", str(exc), field=exc.field) from exc
    poses = next((item for item in checked if item.name == "pose_keypoints"), None)
    if poses is not None and poses.info["fps"] is None and params.fps is None:
        # the worker could not time the video: refuse now rather than fail the job later
        raise Problem(422, "invalid-input", 'pose_keypoints: the document does not say its frame rate: add "fps" '
                      '({"fps": 30, "frames": [...]}) or set params.fps', field="pose_keypoints")
    check_fits(checked, params, state)
    return checked


def check_fits(checked: list[CheckedInput], params: RenderParams, state: AppState) -> None:
    """Refuse a segment no configured worker class has the GPU memory for, rather than queue a job no
    worker can take (the memory planner, model/memory_plan.py, as the preflight's estimates use it)."""
    image = next(item for item in checked if item.name == "reference_image").info
    height, width = frame_size(image["width"], image["height"], params)
    reason = unfit_reason(params, state.settings.worker_classes, height=height, width=width)
    if reason is not None:
        raise Problem(422, "invalid-input", reason, field="params")


def _canvas(name: str, params: RenderParams, files: dict[str, Path], state: AppState) -> dict:
    """Pixel keypoints without a canvas: the reference's are the photo's pixels; the motion's come from
    params.pose_canvas_*, or do not matter once aligned to the reference (model/motion.py)."""
    if name == "reference_keypoints":
        info = check_image("reference_image", files["reference_image"], state.limits).info
        return {"default_canvas": (info["width"], info["height"])}
    return {"canvas": params.pose_canvas, "default_canvas": "extent" if params.align_pose else None}
