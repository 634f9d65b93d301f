"""A throwaway redis-server on a free loopback port, with its files in a temp dir."""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.procs import find_binary, free_port, running, wait_until


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5)


@contextlib.contextmanager
def redis_server(timeout_s: float = 15.0) -> Iterator[RedisServer]:
    """Start redis-server without persistence; yield where it listens; stop and delete it after."""
    binary = find_binary("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="unianimate-redis-") as tmp:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        server = RedisServer("127.0.0.1", port)
        with running(argv, Path(tmp) / "redis.log", Path(tmp)) as proc:
            wait_until(lambda: server.client().ping(), proc, timeout_s, "redis-server",
                       Path(tmp) / "redis.log")
            yield server
