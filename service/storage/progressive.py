"""A file uploaded in parts while it is being written, so that little is left to send when it ends.

The render worker writes the result MP4 with its index at the end (`model/longvideo/mp4.py`): once
written, its bytes never change, except a few header bytes near the start (the `mdat` size)
patched when the file is closed. So after each segment every whole part of `part_bytes` that is on
disk goes up (`advance`), and at the end (`finish`) the rest goes up as the last part, part 1 is
uploaded again if its bytes changed, and the upload is completed. Part 1 is always exactly
`part_bytes` (at least S3's 5 MiB), so the patched header lies inside it whatever the file's size.
A file that never reaches one part is simply put whole at the end.

The upload id is recorded beside the job (`result_upload_key`) when the upload starts. A run that
fails, is canceled or hands its job back aborts its upload; a run that dies cannot, so the next
run aborts the recorded one before it starts its own (a resumed job uploads its MP4 from the
start: the file is written again from the stored segments). An upload whose every run died, and
parts left by a retried `create_multipart` whose answer was lost, are left to the bucket's
lifecycle rule that aborts incomplete multipart uploads (docs/deploy.md).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from service.storage.objects import (
    MIN_PART_BYTES,
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    UploadedPart,
    file_digest,
)

log = logging.getLogger(__name__)


class ProgressiveUpload:
    def __init__(self, storage: Storage, key: str, growing: Path, *, part_bytes: int, record_key: str,
                 content_type: str = "application/octet-stream") -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"parts need at least {MIN_PART_BYTES} bytes, got {part_bytes}")
        self.storage = storage
        self.key = key
        self.growing = Path(growing)  # the file while it is written; `finish` gets its final name
        self.part_bytes = part_bytes
        self.record_key = record_key
        self.content_type = content_type
        self.upload_id: str | None = None
        self._parts: list[UploadedPart] = []
        self._first_sha256 = ""  # of part 1 as uploaded, to see whether closing the file changed it

    def abort_stale(self) -> None:
        """Abort the upload a previous run recorded and never finished (it died)."""
        try:
            stale = self.storage.get_bytes(self.record_key).decode().strip()
        except ObjectNotFound:
            return
        except StorageError as exc:  # not this run's business: the lifecycle rule is the backstop
            log.warning("could not read the earlier upload record of %s: %s", self.key, exc)
            return
        log.info("aborting the unfinished upload %s of %s left by an earlier run", stale, self.key)
        try:
            self.storage.abort_multipart(self.key, stale)
            self.storage.delete_prefix(self.record_key)
        except (StorageError, ValueError) as exc:  # not this run's business: the lifecycle rule is the backstop
            log.warning("could not abort the earlier upload %s of %s: %s", stale, self.key, exc)

    @property
    def uploaded_bytes(self) -> int:
        return sum(part.size_bytes for part in self._parts)

    def advance(self) -> None:
        """Upload every whole part of the file that is on disk and not yet sent."""
        size = self.growing.stat().st_size if self.growing.exists() else 0
        while size - self.uploaded_bytes >= self.part_bytes:
            if self.upload_id is None:
                self._start()
            self._upload(len(self._parts) + 1, self.growing, self.uploaded_bytes, self.part_bytes)

    def finish(self, path: Path) -> StoredObject:
        """The complete file (its final name): the rest of it goes up and the object is complete."""
        size, sha256 = file_digest(path)
        if self.upload_id is None:
            return self.storage.put_file(self.key, path, self.content_type)
        while self.uploaded_bytes < size:
            self._upload(len(self._parts) + 1, path, self.uploaded_bytes,
                         min(self.part_bytes, size - self.uploaded_bytes))
        if _sha256(path, 0, self.part_bytes) != self._first_sha256:  # the header closing the file patched
            self._upload(1, path, 0, self.part_bytes)
        self.storage.complete_multipart(self.key, self.upload_id, self._parts)
        self._forget_record()
        return StoredObject(self.key, size, sha256)

    def abort(self) -> None:
        """Drop the parts uploaded so far (best effort: a failure is logged, the lifecycle rule is the
        backstop). Never raises, so that it never hides the error that ended the run."""
        if self.upload_id is None:
            return
        try:
            self.storage.abort_multipart(self.key, self.upload_id)
            self._forget_record()
        except Exception as exc:  # noqa: BLE001  (whatever it is, the run's own error is the one to raise)
            log.warning("could not abort the upload %s of %s: %s", self.upload_id, self.key, exc)
        self.upload_id, self._parts = None, []

    def _start(self) -> None:
        self.upload_id = self.storage.create_multipart(self.key, self.content_type)
        self.storage.put_bytes(self.record_key, self.upload_id.encode(), "text/plain")

    def _upload(self, number: int, path: Path, offset: int, length: int) -> None:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        if len(data) != length:
            raise RuntimeError(f"{path} has {offset + len(data)} bytes, expected at least {offset + length}")
        part = self.storage.upload_part(self.key, self.upload_id, number, data)
        if number == 1:
            self._first_sha256 = hashlib.sha256(data).hexdigest()
        self._parts[number - 1:number] = [part]

    def _forget_record(self) -> None:
        """Remove the record, unless another run has put its own upload there meanwhile."""
        try:
            if self.storage.get_bytes(self.record_key).decode().strip() == self.upload_id:
                self.storage.delete_prefix(self.record_key)
        except ObjectNotFound:
            pass


def _sha256(path: Path, offset: int, length: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return hashlib.sha256(fh.read(length)).hexdigest()
