"""Warm shutdown of a render worker hands its job back instead of finishing it.

Celery's warm shutdown (SIGTERM) waits for running tasks, and a render can take hours: longer
than any orchestrator waits before it kills the worker. So on SIGTERM the main process forwards
the signal to its pool processes (`forward`); a process that is rendering notes it, the render
stops at the next denoising step (`check` raises WorkerStopping), the lease is released and the
job is enqueued again, and another worker resumes it after its last stored segment. A pool
process that is not rendering exits on SIGTERM as before (billiard's handler).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterable, Iterator

from billiard.process import current_process

log = logging.getLogger(__name__)

_requested = threading.Event()


class WorkerStopping(Exception):
    """This worker is shutting down; the job goes back to the queue."""


def request() -> None:
    """Ask the render in this process to stop at its next step."""
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Between denoising steps: raise WorkerStopping once shutdown was asked for."""
    if _requested.is_set():
        raise WorkerStopping("the worker is shutting down; the job is handed back to the queue")


@contextlib.contextmanager
def rendering() -> Iterator[None]:
    """While a job renders in this process, SIGTERM asks it to stop and be handed back instead of
    ending the process (billiard's own SIGTERM handler is restored afterwards)."""
    if current_process().name == "MainProcess" or threading.current_thread() is not threading.main_thread():
        # the solo pool renders in Celery's main process, whose SIGTERM handler starts the warm
        # shutdown (and `request()` is called from there); signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: request())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def forward(pids: Iterable[int]) -> None:
    """From the main process: pass SIGTERM on to the pool processes."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            log.info("asked render process %d to hand its job back", pid)
