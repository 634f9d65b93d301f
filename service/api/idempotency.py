"""Idempotency-Key: the same key with the same request returns the same job.

The first request with a key reserves it in Redis (`SET NX`) together with a hash of the
request's content and the job id it will create. A repeat with the same hash gets that job;
with a different hash, 422. A failed submission releases the key so the client can retry.
Keys are scoped to the caller (owner) and expire after `ttl_s`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Header

from service.api.problems import Problem

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Reservation:
    job_id: str
    content_hash: str
    fresh: bool  # True: this request reserved the key and must create the job


class ContentHasher:
    """sha256 over the request's meaning (field names and bytes), not its raw framing: a client
    that retries a multipart upload uses a new boundary, and that must still count as the same."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def field(self, name: str, value: bytes) -> None:
        for part in (name.encode(), value):
            self._digest.update(len(part).to_bytes(8, "big"))
            self._digest.update(part)

    def json_field(self, name: str, value: object) -> None:
        self.field(name, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValueError(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


def _key_header(idempotency_key: Annotated[str | None, Header(
        description="same key + same request -> the same answer, without a second job")] = None) -> str | None:
    if idempotency_key is None:
        return None
    try:
        return check_key(idempotency_key)
    except ValueError as exc:
        raise Problem(422, "invalid-request", str(exc)) from exc


# the checked Idempotency-Key header of a submitting route (None when not sent)
IdempotencyKey = Annotated[str | None, Depends(_key_header)]


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int, prefix: str = "unianimate") -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.prefix = prefix

    def _key(self, owner: str, key: str) -> str:
        return f"{self.prefix}:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def reserve(self, owner: str, key: str, content_hash: str, job_id: str) -> Reservation:
        """Reserve `key` for `job_id`, or return what an earlier request reserved it for."""
        value = json.dumps({"job_id": job_id, "hash": content_hash})
        name = self._key(owner, key)
        if self.redis.set(name, value, nx=True, ex=self.ttl_s):
            return Reservation(job_id, content_hash, fresh=True)
        raw = self.redis.get(name)
        if raw is None:  # expired between the two calls: try once more
            return self.reserve(owner, key, content_hash, job_id)
        earlier = json.loads(raw)
        return Reservation(earlier["job_id"], earlier["hash"], fresh=False)

    def release(self, owner: str, key: str, job_id: str) -> None:
        """Forget a reservation made for `job_id` (its submission failed)."""
        name = self._key(owner, key)
        raw = self.redis.get(name)
        if raw is not None and json.loads(raw)["job_id"] == job_id:
            self.redis.delete(name)
