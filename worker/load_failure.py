"""A render process whose model does not load stops the whole worker instead of serving without it.

Celery loads the model in each pool process right after the fork (`worker_process_init`), and its
signal dispatcher only logs an exception a receiver raises: the process would stay in the pool,
the worker would log "ready", and every job it took would fail. Instead the process writes the
reason into a page of memory it shares with the main process (mapped before the fork), asks the
main process for a warm shutdown (SIGTERM: the other pool processes hand their jobs back), and
exits. `unianimate worker` then exits with status 1 and the reason; an orchestrator restarts it,
an operator fixes the weights. Jobs are not touched: their messages stay in the queue.
"""
from __future__ import annotations

import logging
import mmap
import os
import signal
from typing import NoReturn

from billiard.process import current_process

log = logging.getLogger(__name__)

EXIT_STATUS = 1
_NOTE_BYTES = 4096


class FailureNote:
    """A message a forked child leaves for its parent: an anonymous shared mapping survives fork."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, _NOTE_BYTES)  # MAP_SHARED | MAP_ANONYMOUS

    def write(self, message: str) -> None:
        if self.read() is None:  # the first failure is the one to report
            data = message.encode(errors="replace")[: _NOTE_BYTES - 1]
            self._page[: len(data) + 1] = data + b"\0"

    def read(self) -> str | None:
        text = self._page[:].split(b"\0", 1)[0].decode(errors="replace")
        return text or None

    def clear(self) -> None:
        self._page[:] = bytes(_NOTE_BYTES)


note = FailureNote()


def model_failed(exc: BaseException, process_index: int) -> NoReturn:
    """Called in the process whose model failed to load; never returns."""
    message = f"render process {process_index} could not load the model: {type(exc).__name__}: {exc}"
    log.critical("%s; stopping the worker", message, exc_info=exc)
    note.write(message)
    if current_process().name == "MainProcess":  # the solo pool loads in Celery's own process
        raise SystemExit(EXIT_STATUS)  # not an Exception: Celery's dispatcher lets it through
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(EXIT_STATUS)
