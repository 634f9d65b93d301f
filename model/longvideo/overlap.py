"""A bounded background stage: the work after a segment's denoising, overlapped with the next one.

The GPU's part of segment k ends with its latents and its decoded last frame; decoding the other
frames, encoding them and storing them (the caller's `on_segment_done`) can run while segment
k + 1 denoises. One background job at a time, so the stage is never more than one segment behind
and memory stays flat; jobs run in submission order, so the video and the checkpoints keep it too.

Errors keep their meaning: a failed background job re-raises its own exception in the rendering
thread, at the next denoising step (through `guard`) or at the next `submit`/`drain`. When the
rendering thread fails instead (cancel, shutdown, crash), `settle` lets the job in flight end, so a
segment that was being stored is either stored or not, never half-recorded by a dying job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Self

from model.longvideo.protocol import CancelCheck

log = logging.getLogger(__name__)


class BackgroundStage:
    """Runs submitted jobs one at a time in one thread; inline when `enabled` is False (serial)."""

    def __init__(self, enabled: bool = True) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-finish") if enabled else None
        self._pending: Future | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Waits for the previous job (re-raising its error), then starts `job`."""
        self.drain()
        if self._pool is None:
            job()
        else:
            self._pending = self._pool.submit(job)

    def drain(self) -> None:
        """Waits for the job in flight; its exception, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def guard(self, should_cancel: CancelCheck | None) -> CancelCheck:
        """`should_cancel` that first raises the error of a failed background job, so the render
        stops at the next step instead of denoising a segment whose predecessor cannot be stored."""
        def check() -> bool:
            pending = self._pending
            if pending is not None and pending.done() and pending.exception() is not None:
                self.drain()
            return should_cancel is not None and should_cancel()
        return check

    def settle(self) -> None:
        """After the rendering thread failed: let the job in flight end; its error, if any, is logged
        (the rendering thread's own error is the one that propagates)."""
        try:
            self.drain()
        except BaseException:
            log.warning("the background stage of a failed render failed too", exc_info=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.settle()
        self.close()
