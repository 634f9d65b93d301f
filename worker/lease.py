"""Who renders a job right now: a lease in Redis that only its holder can renew or release.

Celery delivers a task at least once (a lost worker's message comes back, the sweeper re-sends
orphaned jobs), so two workers can hold the same job id. Only the one that takes the lease
(SET NX PX with a random token) renders; the other returns at once. The holder renews the
lease from a heartbeat thread; if the process dies, the lease expires after `ttl_s` and the
job becomes visible to the sweeper. A holder that loses its lease (e.g. a long GC pause or a
partition) stops before it writes anything more.
"""
from __future__ import annotations

import logging
import secrets
import threading
from typing import Self

import redis

log = logging.getLogger(__name__)

# Renew or release only if the lease still holds our token (compare-and-set in one round trip).
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseLost(RuntimeError):
    """This worker no longer holds the job's lease; another one may be rendering it."""


def lease_key(prefix: str, job_id: str) -> str:
    return f"{prefix}:lease:{job_id}"


class JobLease:
    def __init__(self, client: redis.Redis, prefix: str, job_id: str, ttl_s: float) -> None:
        self.redis = client
        self.key = lease_key(prefix, job_id)
        self.job_id = job_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = secrets.token_hex(16)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False if it expired or another worker holds it now."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


def lease_alive(client: redis.Redis, prefix: str, job_id: str) -> bool:
    return bool(client.exists(lease_key(prefix, job_id)))


class Heartbeat:
    """Renews a lease every third of its TTL in a daemon thread; `check()` raises LeaseLost once a
    renewal failed, so the render loop stops between steps instead of publishing a stale result."""

    def __init__(self, lease: JobLease) -> None:
        self.lease = lease
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.job_id[:8]}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lost the lease of job {self.lease.job_id}; another worker may have taken it")

    def _run(self) -> None:
        interval = self.lease.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                renewed = self.lease.renew()
            except redis.RedisError as exc:  # a blip: the lease has two more intervals to live
                log.warning("could not renew the lease of job %s: %s", self.lease.job_id, exc)
                continue
            if not renewed:
                log.error("the lease of job %s expired or was taken over", self.lease.job_id)
                self.lost.set()
                return
