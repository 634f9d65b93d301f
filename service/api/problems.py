"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Raise `Problem` anywhere in a request; `install(app)` turns it, FastAPI's validation errors,
Starlette's 404/405 and outages of Redis or storage (503 with Retry-After; service.api.outages
says which Redis errors are outages) into problem responses. Bad input is always a 4xx whose
`detail` says what to fix; a 500 means a bug, and says nothing internal.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.api.outages import OPERATOR_ACTION, redis_outage
from service.storage.objects import StorageMisconfigured, StorageUnavailable

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:unianimate:problem:"
log = logging.getLogger(__name__)


class Problem(Exception):
    """An error response. `slug` names the problem type (documented in docs/api.md)."""

    def __init__(self, status: int, slug: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body = {"type": TYPE_PREFIX + self.slug, "title": self.title, "status": self.status,
                "detail": self.detail}
        if instance:
            body["instance"] = instance
        return body | self.extensions


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(problem.body(instance), status_code=problem.status,
                        headers=problem.headers, media_type=MEDIA_TYPE)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


def validation_problem(errors: list[dict[str, Any]], where: str | None = None) -> Problem:
    """Pydantic errors -> a 422 listing every field and what is wrong with it."""
    items = [{"field": _location(((where,) if where else ()) + tuple(e.get("loc", ()))),
              "message": e.get("msg", "invalid")} for e in errors]
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in items)
    return Problem(422, "invalid-request", detail, title="Invalid request", errors=items)


async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(exc, request)


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem_response(validation_problem(list(exc.errors())), request)


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    slugs = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}; see /docs for the API"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    problem = Problem(exc.status_code, slugs.get(exc.status_code, "http-error"), detail,
                      headers=dict(exc.headers or {}))
    return problem_response(problem, request)


def unavailable(detail: str) -> Problem:
    """The 503 of a dependency outage: nothing for the client to fix but to retry later."""
    return Problem(503, "unavailable", f"{detail}; retry later", headers={"Retry-After": "5"})


async def _on_storage(request: Request, exc: StorageUnavailable) -> JSONResponse:
    if isinstance(exc, StorageMisconfigured):  # an operator must act: say so in the log, loudly
        log.error("object storage misconfigured on %s %s: %s", request.method, request.url.path, exc)
        # the client learns that it is not its fault; bucket and setting names stay in the log
        return problem_response(unavailable("object storage refused the service (a configuration problem "
                                            "the operator must fix); retry later"), request)
    log.warning("object storage unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(unavailable("object storage is unreachable"), request)


async def _on_redis(request: Request, exc: RedisError) -> JSONResponse:
    what = redis_outage(exc)
    if what is None:  # a malformed command or the like: our bug
        return await _on_crash(request, exc)
    level = logging.ERROR if isinstance(exc, OPERATOR_ACTION) else logging.WARNING
    log.log(level, "%s on %s %s: %s", what, request.method, request.url.path, exc)
    return problem_response(unavailable(what), request)


async def _on_disconnect(request: Request, exc: ClientDisconnect) -> Response:
    """The client hung up while sending its body: nobody is left to answer, and it is no error of ours."""
    log.info("client went away during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(Problem(500, "internal", "internal error; it has been logged"), request)


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem+json response."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RedisError, _on_redis)
    app.add_exception_handler(StorageUnavailable, _on_storage)
    app.add_exception_handler(ClientDisconnect, _on_disconnect)
    app.add_exception_handler(Exception, _on_crash)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": f"{TYPE_PREFIX}<slug>; slugs are listed in docs/api.md"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong and what to change"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries saying these statuses answer with problem+json. An authenticated
    route (401) may also answer 429: every request takes a token of its key's rate limit."""
    if 401 in statuses and 429 not in statuses:
        statuses = (*statuses, 429)
    return {status: {"description": HTTPStatus(status).phrase,
                     "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}} for status in statuses}
