"""Object storage for the render worker that rides out an outage instead of failing the run.

A storage outage (a restart, a network blip, a throttling spell) is not the job's fault: without
patience the worker's upload of a finished segment would fail the run, and a few such runs the
job. So every call that reaches storage is retried (tenacity) on `StorageUnavailable` with
exponential backoff and jitter until `patience_s` has passed; only then does the error reach the run. The
job's lease keeps being renewed meanwhile (the heartbeat thread). Every call is idempotent: puts
overwrite the same key, reads and deletes may repeat, a part uploaded again replaces itself, an
abort of an aborted upload is no error. Two are not quite: a `create_multipart` whose answer was
lost leaves an upload nobody knows of (the bucket's lifecycle rule aborts it), and a
`complete_multipart` whose answer was lost may fail its retry (the upload is gone): the run fails,
and the next one uploads the MP4 again.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from service.storage.objects import Storage, StorageUnavailable, StoredObject, UploadedPart

log = logging.getLogger(__name__)
T = TypeVar("T")


class PatientStorage(Storage):
    def __init__(self, storage: Storage, patience_s: float, *, base_s: float = 0.5, cap_s: float = 15.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.storage = storage
        self.patience_s = patience_s
        self.base_s = base_s
        self.cap_s = cap_s
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    def _wait(self, state: RetryCallState) -> float:
        # half fixed, half random: retries spread out, yet each waits a predictable minimum
        return min(self.cap_s, self.base_s * 2 ** (state.attempt_number - 1)) * (0.5 + self._rng() / 2)

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        deadline = self._clock() + self.patience_s
        retrying = Retrying(
            retry=retry_if_exception_type(StorageUnavailable),
            wait=self._wait,
            # give up when the next wait would end past the patience (tenacity waits, then stops)
            stop=lambda state: self._clock() + state.upcoming_sleep > deadline,
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "object storage unavailable (%s): retry %d of %s in %.1f s", state.outcome.exception(),
                state.attempt_number, what, state.upcoming_sleep),
            reraise=True,
        )
        return retrying(call)

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
        return self._retry(f"put {key}", lambda: self.storage.put_file(key, path, content_type))

    def get_file(self, key: str, dest: Path) -> None:
        self._retry(f"get {key}", lambda: self.storage.get_file(key, dest))

    def exists(self, key: str) -> bool:
        return self._retry(f"head {key}", lambda: self.storage.exists(key))

    def list(self, prefix: str) -> list[str]:
        return self._retry(f"list {prefix}", lambda: self.storage.list(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self._retry(f"delete {prefix}", lambda: self.storage.delete_prefix(prefix))

    def create_multipart(self, key: str, content_type: str = "application/octet-stream") -> str:
        # a retry after a lost answer leaves an upload nobody knows of: the lifecycle rule aborts it
        return self._retry(f"start an upload of {key}", lambda: self.storage.create_multipart(key, content_type))

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        return self._retry(f"upload part {number} of {key}",
                           lambda: self.storage.upload_part(key, upload_id, number, data))

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        self._retry(f"complete {key}", lambda: self.storage.complete_multipart(key, upload_id, parts))

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._retry(f"abort an upload of {key}", lambda: self.storage.abort_multipart(key, upload_id))

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return self.storage.presigned_url(key, expires_s)  # signed locally, no request

    def local_path(self, key: str) -> Path | None:
        return self.storage.local_path(key)

    def ping(self) -> None:
        self.storage.ping()  # a readiness check reports the outage, it does not wait it out
