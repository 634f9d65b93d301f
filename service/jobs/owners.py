"""Which live jobs each API key has, and how much GPU time it used today (service.jobs.store writes it).

Per-key limits (service.jobs.key_limits) and the fair dispatcher (service.jobs.fair_queue) count
from these, so the counts change in the same MULTI as the job's state and cannot drift from it:

- `{prefix}:owner:{owner}:queued` and `:running`: sets of job ids, like StateIndex's live sets;
- `{prefix}:owners`: every key hash that ever made a job (what `unianimate keys` and /metrics list);
- `{prefix}:gpu:{YYYY-MM-DD}`: hash owner -> seconds its jobs spent running that UTC day (the same
  wall time as the cluster-wide `gpu_seconds_total`), kept two days.
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from service.jobs.record import JobStatus

LIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
GPU_DAY_TTL_S = 2 * 24 * 3600


def key_owner(key: str) -> str:
    """The owner id of an API key: its sha256, the only form of the key that is ever stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d")


class OwnerIndex:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, owner: str, status: JobStatus) -> str:
        return f"{self.prefix}:owner:{owner}:{JobStatus(status).value}"

    @property
    def owners_key(self) -> str:
        return f"{self.prefix}:owners"

    def gpu_key(self, day: str) -> str:
        return f"{self.prefix}:gpu:{day}"

    def add(self, pipe: Any, owner: str, job_id: str, status: JobStatus) -> None:
        pipe.sadd(self.owners_key, owner)
        if status in LIVE:
            pipe.sadd(self.key(owner, status), job_id)

    def remove(self, pipe: Any, owner: str, job_id: str, status: JobStatus) -> None:
        if status in LIVE:
            pipe.srem(self.key(owner, status), job_id)

    def move(self, pipe: Any, owner: str, job_id: str, before: JobStatus, after: JobStatus) -> None:
        self.remove(pipe, owner, job_id, before)
        if after in LIVE:
            pipe.sadd(self.key(owner, after), job_id)

    def add_gpu_seconds(self, pipe: Any, owner: str, seconds: float, day: str | None = None) -> None:
        key = self.gpu_key(day or utc_day())
        pipe.hincrbyfloat(key, owner, seconds)
        pipe.expire(key, GPU_DAY_TTL_S)

    def owners(self, client: Any) -> list[str]:
        return sorted(_text(o) for o in client.smembers(self.owners_key))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
