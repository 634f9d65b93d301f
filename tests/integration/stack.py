"""The whole service as real processes, for the end-to-end tests.

A private redis-server, SeaweedFS (S3), the API under uvicorn, one render worker (the tiny model,
prefork) and one webhook worker, all on loopback ports, configured only through UNIANIMATE_*
variables as an operator would. Started once per test session; each test makes its own jobs.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import free_port, running, wait_until
from tests.support.redis_server import RedisServer, redis_server
from tests.support.seaweedfs import SeaweedS3, seaweedfs_s3

REPO = Path(__file__).resolve().parents[2]
KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789"
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEASE_TTL_S = 2.0
# Renders stay small so the suite runs in a few minutes on two CPU cores.
SMALL = {"height": 64, "width": 64, "steps": 2, "seed": 3, "segment_frames": 8}


@dataclass
class Stack:
    api: str
    redis: RedisServer
    s3: SeaweedS3
    bucket: str
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def render_children(self) -> list[int]:
        """PIDs of the render worker's prefork children (the processes that run jobs)."""
        out = subprocess.run(["pgrep", "-P", str(self.procs["render"].pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]


def _environment(redis: RedisServer, s3: SeaweedS3, bucket: str, api_port: int, **extra: str) -> list[str]:
    """`env` arguments: drop the caller's UNIANIMATE_* settings, then set the stack's."""
    unset = [arg for name in os.environ if name.startswith("UNIANIMATE_") for arg in ("-u", name)]
    settings = {
        "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
        "UNIANIMATE_REDIS_URL": redis.url,
        "UNIANIMATE_STORAGE": "s3", "UNIANIMATE_S3_ENDPOINT": s3.endpoint, "UNIANIMATE_S3_BUCKET": bucket,
        "UNIANIMATE_S3_ACCESS_KEY": s3.access_key, "UNIANIMATE_S3_SECRET_KEY": s3.secret_key,
        "UNIANIMATE_S3_CREATE_BUCKET": "true",
        "UNIANIMATE_PORT": str(api_port), "UNIANIMATE_API_KEYS": f"{KEY_A},{KEY_B}",
        "UNIANIMATE_SSE_KEEPALIVE_S": "1",
        "UNIANIMATE_MODEL": "tiny", "UNIANIMATE_DEVICE": "cpu",
        "UNIANIMATE_LEASE_TTL_S": str(LEASE_TTL_S), "UNIANIMATE_SWEEP_INTERVAL_S": "0.5",
        "UNIANIMATE_PROGRESS_INTERVAL_S": "0",
        "UNIANIMATE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "UNIANIMATE_WEBHOOK_BACKOFF_BASE_S": "0.5", "UNIANIMATE_WEBHOOK_BACKOFF_CAP_S": "1",
        "UNIANIMATE_WEBHOOK_PROGRESS_INTERVAL_S": "0",
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    return ["env", *unset, *(f"{name}={value}" for name, value in settings.items())]


def _unianimate(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _worker_ready(log: Path) -> bool:
    return b" ready." in log.read_bytes()


@contextlib.contextmanager
def stack_processes() -> Iterator[Stack]:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="unianimate-stack-") as tmp:
        logs = Path(tmp)
        redis = stack.enter_context(redis_server())
        s3 = stack.enter_context(seaweedfs_s3())
        bucket = f"stack-{uuid.uuid4().hex[:8]}"
        port = free_port()
        env = _environment(redis, s3, bucket, port)
        result = Stack(f"http://127.0.0.1:{port}", redis, s3, bucket, logs)
        # as in production, only the webhook worker holds the signing secret
        commands = {
            "api": env + _unianimate("api", "--log-level", "warning"),
            "render": env + _unianimate("worker", "--queues", "render", "--concurrency", "1"),
            "webhooks": _environment(redis, s3, bucket, port, UNIANIMATE_WEBHOOK_SECRET=WEBHOOK_SECRET)
            + _unianimate("worker", "--queues", "webhooks", "--concurrency", "2"),
        }
        for name, argv in commands.items():
            result.procs[name] = stack.enter_context(running(argv, logs / f"{name}.log", REPO))
        wait_until(lambda: httpx.get(f"{result.api}/readyz", timeout=2).status_code == 200, result.procs["api"],
                   60, "the API", logs / "api.log")
        for name in ("render", "webhooks"):
            wait_until(lambda n=name: _worker_ready(logs / f"{n}.log"), result.procs[name], 180,
                       f"the {name} worker", logs / f"{name}.log")
        yield result


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with stack_processes() as running_stack:
        yield running_stack


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/jobs/{job_id}").raise_for_status().json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s: {job}")
        time.sleep(0.2)
