"""Preflight previews in object storage, kept for `preview_retention_s`.

A preview's id is a random 128-bit name: its links need no API key (an <img> or <video> cannot
send one), like a presigned URL. Expiry times sit in one Redis sorted set; each new preflight
deletes the previews whose time has passed, so storage holds only the recent ones.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from service.storage.objects import Storage, preview_key

log = logging.getLogger(__name__)

STRIP = "strip.png"
CLIP = "preview.mp4"
CONTENT_TYPES = {STRIP: "image/png", CLIP: "video/mp4"}


@dataclass(frozen=True)
class Preview:
    id: str
    expires_at: float  # unix time


class PreviewStore:
    def __init__(self, storage: Storage, client: redis.Redis, prefix: str, retention_s: int) -> None:
        self.storage = storage
        self.redis = client
        self.key = f"{prefix}:previews"
        self.retention_s = retention_s

    def save(self, strip: bytes, clip: Path) -> Preview:
        self.sweep()
        preview = Preview(uuid.uuid4().hex, time.time() + self.retention_s)
        # recorded first: a crash after the uploads still leaves the files to the sweep
        self.redis.zadd(self.key, {preview.id: preview.expires_at})
        self.storage.put_bytes(preview_key(preview.id, STRIP), strip, CONTENT_TYPES[STRIP])
        self.storage.put_file(preview_key(preview.id, CLIP), clip, CONTENT_TYPES[CLIP])
        return preview

    def alive(self, preview_id: str) -> bool:
        expires = self.redis.zscore(self.key, preview_id)
        return expires is not None and expires > time.time()

    def sweep(self) -> int:
        """Deletes the expired previews; returns how many."""
        expired = self.redis.zrangebyscore(self.key, "-inf", time.time())
        for raw in expired:
            preview_id = raw.decode() if isinstance(raw, bytes) else raw
            try:
                self.storage.delete_prefix(f"previews/{preview_id}/")
            except Exception as exc:  # noqa: BLE001  (the next sweep tries again)
                log.warning("could not delete preview %s: %s", preview_id, exc)
                continue
            self.redis.zrem(self.key, preview_id)
        return len(expired)
