"""Read a POST /animate body (multipart files, or JSON with https URLs) into a `Submission`:
inputs in temp files, parsed params and webhook, and a hash of the request's content."""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.api.idempotency import ContentHasher
from service.api.problems import Problem, validation_problem
from service.inputs.checks import InputError, parse_json
from service.inputs.fetch import FetchError, fetch_to_file
from service.jobs.params import RenderParams
from service.jobs.record import Webhook
from service.netguard import BlockedURL, check_url
from service.settings import ApiSettings
from service.webhooks.events import validate_event_filter

FILE_FIELDS = ("reference_image", "pose_video", "pose_keypoints", "reference_keypoints")
TEXT_FIELDS = ("params", "webhook_url", "webhook_events")
MAX_TEXT_FIELD = 1024 * 1024
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass
class Submission:
    files: dict[str, Path]
    params: RenderParams
    webhook: Webhook | None
    content_hash: str


class AnimateJson(BaseModel):
    """The application/json form of POST /animate: inputs by URL instead of uploads."""
    model_config = ConfigDict(extra="forbid")

    reference_image_url: str
    pose_video_url: str | None = None
    pose_keypoints_url: str | None = None
    reference_keypoints_url: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


async def read_multipart(request: Request, tmp: Path, settings: ApiSettings) -> Submission:
    form = await request.form(max_files=len(FILE_FIELDS), max_fields=len(FILE_FIELDS) + len(TEXT_FIELDS),
                              max_part_size=MAX_TEXT_FIELD)
    hasher, files, text = ContentHasher(), {}, {}
    try:
        for name, value in form.multi_items():
            if name not in FILE_FIELDS + TEXT_FIELDS:
                raise Problem(422, "invalid-request", f"unknown form field {name!r}; expected "
                              f"{', '.join(FILE_FIELDS + TEXT_FIELDS)}")
            if name in files or (name in text and name != "webhook_events"):
                raise Problem(422, "invalid-request", f"form field {name!r} was sent more than once")
            if name in FILE_FIELDS:  # copying and hashing up to max_upload_bytes: not on the event loop
                files[name] = await run_in_threadpool(_save_part, name, value, tmp, hasher)
            else:
                if isinstance(value, UploadFile):
                    raise Problem(422, "invalid-request", f"{name} must be a text field, not a file")
                text.setdefault(name, []).append(value)
    finally:
        await form.close()
    params = parse_params(text.get("params", ["{}"])[0], settings)
    events = [e.strip() for raw in text.get("webhook_events", []) for e in raw.split(",") if e.strip()]
    webhook = await webhook_from(text.get("webhook_url", [None])[0], events or None, settings)
    hasher.json_field("params", params[1])
    hasher.json_field("webhook", webhook.model_dump() if webhook else None)
    return _finish(files, params[0], webhook, hasher)


async def read_body(request: Request, tmp: Path, settings: ApiSettings) -> Submission:
    """A POST /animate (or /animate/preflight) body of either media type."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await read_multipart(request, tmp, settings)
    if media_type == "application/json":
        return await read_json(request, tmp, settings)
    raise Problem(415, "unsupported-media-type", "send multipart/form-data (file uploads) or "
                                                 "application/json (https URLs)")


def _save_part(name: str, value: Any, tmp: Path, hasher: ContentHasher) -> Path:
    """Copy one part out of Starlette's spool into our temp dir; hash its bytes on the way.

    The spool (an unnamed temp file: the checks need a path) is closed as soon as it is copied, so
    its disk space is freed then rather than after the whole request."""
    dest = tmp / name
    digest = hashlib.sha256()
    if isinstance(value, UploadFile):
        value.file.seek(0)
        with open(dest, "wb") as out:
            while chunk := value.file.read(1024 * 1024):
                digest.update(chunk)
                out.write(chunk)
        value.file.close()
    else:  # keypoint JSON may also come as a plain text field
        data = value.encode()
        digest.update(data)
        dest.write_bytes(data)
    hasher.field(name, digest.hexdigest().encode())
    return dest


async def read_json_document(request: Request, settings: ApiSettings) -> Any:
    """A JSON request body, capped and parsed with the nesting limit (422 when it is not JSON)."""
    body = await _read_capped(request, MAX_TEXT_FIELD)
    try:
        return parse_json("body", body, settings.max_json_depth)
    except InputError as exc:
        raise Problem(422, "invalid-request", str(exc)) from exc


@dataclass
class JsonRequest(Generic[M]):
    spec: M
    params: RenderParams
    webhook: Webhook | None
    hasher: ContentHasher


async def read_json_request(request: Request, settings: ApiSettings, model: type[M],
                            endpoint: str | None = None) -> JsonRequest[M]:
    """A JSON submission: parsed within the limits, validated as `model`, its params and webhook
    checked, and hashed for Idempotency-Key (`endpoint` keeps the hashes of different routes apart)."""
    document = await read_json_document(request, settings)
    try:
        spec = model.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc.errors()) from exc
    params = _params_dict(spec.params)
    webhook = await webhook_from(spec.webhook_url, spec.webhook_events, settings)
    hasher = ContentHasher()
    if endpoint is not None:
        hasher.json_field("endpoint", endpoint)
    hasher.json_field("body", document)
    return JsonRequest(spec, params, webhook, hasher)


async def read_json(request: Request, tmp: Path, settings: ApiSettings) -> Submission:
    body = await read_json_request(request, settings, AnimateJson)
    spec, params, webhook, hasher = body.spec, body.params, body.webhook, body.hasher
    urls = {name: getattr(spec, f"{name}_url") for name in FILE_FIELDS if getattr(spec, f"{name}_url")}
    files = await _download_all(urls, tmp, settings)
    return _finish(files, params, webhook, hasher)


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit`: the upload limit is far larger, and a
    JSON request should not be held in memory up to that size first."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "too-large", f"a JSON request may be at most {limit} bytes; "
                                            "upload large inputs as multipart files or by URL")
    return bytes(body)


async def _download_all(urls: dict[str, str], tmp: Path, settings: ApiSettings) -> dict[str, Path]:
    async def one(name: str, url: str) -> tuple[str, Path]:
        # keypoint documents are refused past max_json_bytes anyway: no need to download more
        limit = settings.max_json_bytes if name.endswith("keypoints") else settings.max_upload_bytes
        try:
            await fetch_to_file(url, tmp / name, max_bytes=limit,
                                timeout_s=settings.fetch_timeout_s, allow_hosts=settings.webhook_allow_hosts)
        except FetchError as exc:
            raise Problem(422, "input-unreachable", f"{name}_url: {exc}") from exc
        return name, tmp / name

    return dict(await gather_downloads([one(name, url) for name, url in urls.items()]))


async def gather_downloads(downloads: list[Coroutine[Any, Any, T]]) -> list[T]:
    """All at once. On the first failure the others are cancelled and awaited before the error
    leaves: a download still writing into the temp folder would race its removal (a 500)."""
    tasks = [asyncio.ensure_future(download) for download in downloads]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _finish(files: dict[str, Path], params: RenderParams, webhook: Webhook | None,
            hasher: ContentHasher) -> Submission:
    if "reference_image" not in files:
        raise Problem(422, "invalid-request", "reference_image is required (PNG, JPEG or WebP)")
    if ("pose_video" in files) == ("pose_keypoints" in files):
        raise Problem(422, "invalid-request", "send exactly one of pose_video or pose_keypoints")
    return Submission(files, params, webhook, hasher.hexdigest())


def parse_params(raw: str, settings: ApiSettings) -> tuple[RenderParams, Any]:
    try:
        document = parse_json("params", raw.encode(), settings.max_json_depth)
    except InputError as exc:
        raise Problem(422, "invalid-request", str(exc)) from exc
    if not isinstance(document, dict):
        raise Problem(422, "invalid-request", "params must be a JSON object")
    return _params_dict(document), document


def _params_dict(document: dict[str, Any]) -> RenderParams:
    try:
        return RenderParams.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc.errors(), where="params") from exc


async def webhook_from(url: str | None, events: list[str] | None, settings: ApiSettings) -> Webhook | None:
    """Check the webhook at submission, so a bad URL is a 4xx now rather than failed deliveries
    later (delivery checks again: DNS answers may change)."""
    if url is None:
        if events:
            raise Problem(422, "invalid-request", "webhook_events needs a webhook_url")
        return None
    try:
        wanted = validate_event_filter(events)
        await run_in_threadpool(check_url, url, settings.webhook_allow_hosts)  # resolves DNS: off the loop
    except BlockedURL as exc:
        raise Problem(422, "invalid-request", f"webhook_url: {exc}") from exc
    except ValueError as exc:
        raise Problem(422, "invalid-request", f"webhook_events: {exc}") from exc
    return Webhook(url=url, events=sorted(wanted) if wanted else None)
