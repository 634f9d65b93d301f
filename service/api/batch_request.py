"""Read a POST /animate/batch body into a `Batch`: one motion, several references (each with its
optional keypoints), the shared params and webhook, and a hash of the request's content.

The fields are those of POST /animate (service/api/animate_request.py, whose helpers this reuses),
except that `reference_image` and `reference_keypoints` repeat (multipart), or are the lists
`reference_image_urls` / `reference_keypoints_urls` (JSON), in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.api.animate_request import (
    MAX_TEXT_FIELD,
    TEXT_FIELDS,
    _download_all,
    _save_part,
    gather_downloads,
    parse_params,
    read_json_request,
    webhook_from,
)
from service.api.idempotency import ContentHasher
from service.api.problems import Problem
from service.jobs.params import RenderParams
from service.jobs.record import Webhook
from service.settings import ApiSettings

MOTION_FIELDS = ("pose_video", "pose_keypoints")
REFERENCE_FIELDS = ("reference_image", "reference_keypoints")


@dataclass
class Batch:
    motion: dict[str, Path]  # exactly one of pose_video / pose_keypoints
    references: list[dict[str, Path]]  # per reference: reference_image, and reference_keypoints if sent
    params: RenderParams
    webhook: Webhook | None
    content_hash: str


class AnimateBatchJson(BaseModel):
    """The application/json form of POST /animate/batch: inputs by URL."""
    model_config = ConfigDict(extra="forbid")

    reference_image_urls: list[str] = Field(min_length=1)
    reference_keypoints_urls: list[str] | None = None
    pose_video_url: str | None = None
    pose_keypoints_url: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


async def read_batch(request: Request, tmp: Path, settings: ApiSettings) -> Batch:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, tmp, settings)
    if media_type == "application/json":
        return await _read_json(request, tmp, settings)
    raise Problem(415, "unsupported-media-type", "send multipart/form-data (file uploads) or "
                                                 "application/json (https URLs)")


async def _read_multipart(request: Request, tmp: Path, settings: ApiSettings) -> Batch:
    most = settings.batch_max_references
    form = await request.form(max_files=2 * most + 1, max_fields=2 * most + 1 + len(TEXT_FIELDS) + 4,
                              max_part_size=MAX_TEXT_FIELD)
    hasher, motion, text = ContentHasher(), {}, {}
    hasher.json_field("endpoint", "batch")  # never the same request as a one-reference POST /animate
    listed: dict[str, list[Path]] = {name: [] for name in REFERENCE_FIELDS}
    try:
        for name, value in form.multi_items():
            if name in REFERENCE_FIELDS:
                folder = _reference_folder(tmp, len(listed[name]), most)
                listed[name].append(await run_in_threadpool(_save_part, name, value, folder, hasher))
            elif name in MOTION_FIELDS:
                if name in motion:
                    raise Problem(422, "invalid-request", f"form field {name!r} was sent more than once: a batch "
                                                          "has one motion")
                motion[name] = await run_in_threadpool(_save_part, name, value, tmp, hasher)
            elif name in TEXT_FIELDS:
                if isinstance(value, UploadFile):
                    raise Problem(422, "invalid-request", f"{name} must be a text field, not a file")
                if name in text and name != "webhook_events":
                    raise Problem(422, "invalid-request", f"form field {name!r} was sent more than once")
                text.setdefault(name, []).append(value)
            else:
                raise Problem(422, "invalid-request", f"unknown form field {name!r}; expected "
                              f"{', '.join(REFERENCE_FIELDS + MOTION_FIELDS + TEXT_FIELDS)}")
    finally:
        await form.close()
    params, raw_params = parse_params(text.get("params", ["{}"])[0], settings)
    events = [e.strip() for raw in text.get("webhook_events", []) for e in raw.split(",") if e.strip()]
    webhook = await webhook_from(text.get("webhook_url", [None])[0], events or None, settings)
    hasher.json_field("params", raw_params)
    hasher.json_field("webhook", webhook.model_dump() if webhook else None)
    return _finish(motion, listed["reference_image"], listed["reference_keypoints"], params, webhook, hasher,
                   settings)


async def _read_json(request: Request, tmp: Path, settings: ApiSettings) -> Batch:
    body = await read_json_request(request, settings, AnimateBatchJson, endpoint="batch")
    spec, params, webhook, hasher = body.spec, body.params, body.webhook, body.hasher
    _check_counts(len(spec.reference_image_urls), spec.reference_keypoints_urls, settings)
    downloads: list[tuple[Path, dict[str, str]]] = [
        (tmp, {name: url for name in MOTION_FIELDS if (url := getattr(spec, f"{name}_url"))})]
    for index, url in enumerate(spec.reference_image_urls):
        urls = {"reference_image": url}
        if spec.reference_keypoints_urls:
            urls["reference_keypoints"] = spec.reference_keypoints_urls[index]
        downloads.append((_reference_folder(tmp, index, settings.batch_max_references), urls))
    fetched = await _download_each(downloads, settings)
    references = fetched[1:]
    return _finish(fetched[0], [r["reference_image"] for r in references],
                   [r["reference_keypoints"] for r in references if "reference_keypoints" in r], params, webhook,
                   hasher, settings)


async def _download_each(downloads: list[tuple[Path, dict[str, str]]], settings: ApiSettings
                         ) -> list[dict[str, Path]]:
    """All downloads at once (the motion's, then each reference's); errors name the reference."""
    async def one(index: int, folder: Path, urls: dict[str, str]) -> dict[str, Path]:
        try:
            return await _download_all(urls, folder, settings)
        except Problem as exc:
            if index == 0:
                raise
            raise Problem(exc.status, exc.slug, f"reference {index - 1}: {exc.detail}") from exc

    return await gather_downloads([one(index, folder, urls) for index, (folder, urls) in enumerate(downloads)])


def _reference_folder(tmp: Path, index: int, most: int) -> Path:
    if index >= most:
        raise Problem(422, "invalid-request", f"a batch takes at most {most} references "
                                              "(UNIANIMATE_BATCH_MAX_REFERENCES); split it into several batches")
    folder = tmp / f"reference-{index}"
    folder.mkdir(exist_ok=True)
    return folder


def _check_counts(images: int, keypoints: list | None, settings: ApiSettings) -> None:
    if images > settings.batch_max_references:
        raise Problem(422, "invalid-request", f"a batch takes at most {settings.batch_max_references} references "
                                              f"(got {images}); split it into several batches")
    if keypoints and len(keypoints) != images:
        raise Problem(422, "invalid-request", f"reference_keypoints: got {len(keypoints)} for {images} reference "
                                              "images; send one per reference image, in the same order, or none")


def _finish(motion: dict[str, Path], images: list[Path], keypoints: list[Path], params: RenderParams,
            webhook: Webhook | None, hasher: ContentHasher, settings: ApiSettings) -> Batch:
    if not images:
        raise Problem(422, "invalid-request", "reference_image is required: one or more (PNG, JPEG or WebP)")
    _check_counts(len(images), keypoints, settings)
    if len(motion) != 1:
        raise Problem(422, "invalid-request", "send exactly one of pose_video or pose_keypoints")
    references = [{"reference_image": image} for image in images]
    for reference, path in zip(references, keypoints, strict=False):
        reference["reference_keypoints"] = path
    return Batch(motion, references, params, webhook, hasher.hexdigest())
