"""Which jobs are in which state, kept in Redis beside the records (service.jobs.store writes it).

Live jobs (queued, running) are in plain sets, `{prefix}:state:{status}`: they never expire,
and the sweeper walks the running set. A finished job's record expires after its retention, and
a set member cannot expire, so finished jobs are in sorted sets scored by the record's expiry
time, `{prefix}:ended:{status}`. Reads count only members whose record still exists (score in
the future), and every write that finishes a job prunes the members whose time has passed, so
the index stays as small as the set of retained records and never disagrees with it.
"""
from __future__ import annotations

import math
import time
from typing import Any

import redis

from service.jobs.record import TERMINAL, JobStatus


def epoch_seconds(ts: float) -> int:
    """A Unix time rounded up to whole seconds (EXPIREAT/EXAT take integers)."""
    return math.ceil(ts)


class StateIndex:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, status: JobStatus) -> str:
        kind = "ended" if status in TERMINAL else "state"
        return f"{self.prefix}:{kind}:{status.value}"

    def add(self, pipe: Any, job_id: str, status: JobStatus, expires_at: float | None = None) -> None:
        if status in TERMINAL:
            pipe.zadd(self.key(status), {job_id: epoch_seconds(expires_at or time.time())})
        else:
            pipe.sadd(self.key(status), job_id)

    def remove(self, pipe: Any, job_id: str, status: JobStatus) -> None:
        if status in TERMINAL:
            pipe.zrem(self.key(status), job_id)
        else:
            pipe.srem(self.key(status), job_id)

    def move(self, pipe: Any, job_id: str, before: JobStatus, after: JobStatus,
             expires_at: float | None) -> None:
        """Queue the commands that move `job_id` from `before` to `after` (inside a MULTI)."""
        if before not in TERMINAL and after not in TERMINAL:
            pipe.smove(self.key(before), self.key(after), job_id)
            return
        self.remove(pipe, job_id, before)
        self.add(pipe, job_id, after, expires_at)
        if after in TERMINAL:
            self.prune(pipe)

    def prune(self, pipe: Any) -> None:
        """Drop finished jobs whose records have expired."""
        now = time.time()
        for status in TERMINAL:
            pipe.zremrangebyscore(self.key(status), "-inf", f"({now}")

    def counts(self, client: redis.Redis) -> dict[JobStatus, int]:
        now = time.time()
        with client.pipeline(transaction=False) as pipe:
            for status in JobStatus:
                if status in TERMINAL:
                    pipe.zcount(self.key(status), now, "+inf")
                else:
                    pipe.scard(self.key(status))
            return dict(zip(JobStatus, pipe.execute(), strict=True))

    def ids(self, client: redis.Redis, status: JobStatus) -> list[bytes | str]:
        if status in TERMINAL:
            return client.zrangebyscore(self.key(status), time.time(), "+inf")
        return list(client.smembers(self.key(status)))
