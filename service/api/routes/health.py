"""Liveness, readiness and metrics."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.metrics import render_metrics
from service.api.problems import MEDIA_TYPE, Problem, problem_responses
from service.api.state import State

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (it does not look at Redis or storage)."""
    # async: no thread hop, so it is the cheapest request the API answers (bench/load.py's baseline)
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
def readyz(state: State) -> Any:
    """Ready when Redis and object storage both answer; 503 names what does not."""
    checks: dict[str, str] = {}
    try:
        state.jobs.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001  (any failure means "not ready"; the reason is reported)
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        state.storage.ping()
        checks["storage"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"unreachable: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return {"status": "ready", "checks": checks}
    problem = Problem(503, "unavailable", "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()
                                                                  if v != "ok"), checks=checks)
    return JSONResponse(problem.body("/readyz"), status_code=503, media_type=MEDIA_TYPE)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **problem_responses(503)})
def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(render_metrics(state.jobs, state.key_limits), media_type=CONTENT_TYPE_LATEST)
