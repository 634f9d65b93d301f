"""Object storage for job inputs, finished segments and results: one interface, two backends.

Keys are built only by the functions below from a job id and fixed names, never from anything
a client sent, so no request can choose where a file lands.

    jobs/{job_id}/inputs/{name}           validated inputs (reference_image.png, pose_video.mp4, ...)
    jobs/{job_id}/segments/{k:04d}.{ext}  the frames of finished segment k and its last frame
    jobs/{job_id}/result.mp4              the final video
    jobs/{job_id}/result_upload.txt       the id of the multipart upload of result.mp4 under way
    jobs/{job_id}/live.m3u8, live/...     the HLS playlist of finished segments and its fragments
    previews/{preview_id}/...             preflight previews (strip.png, preview.mp4), kept briefly
    jobs/{job_id}/manifest.json           how the video was made (reproducibility manifest)
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import CommonSettings

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9]+)*$")
_CHUNK = 1024 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part of a multipart upload, except the last one
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class StorageError(Exception):
    """Base of storage failures."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached or keeps failing; the request may succeed later."""


class StorageMisconfigured(StorageUnavailable):
    """The backend answers but refuses us: no such bucket, bad credentials, access denied. Only an
    operator can fix it (so it is logged as an error), yet it is not the client's fault either:
    the API answers 503, and a worker retries as for any outage, in case the fix comes soon."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ObjectNotFound(StorageError, KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class UploadedPart:
    """One part of a multipart upload, as `complete_multipart` needs it back."""
    number: int  # 1..10000; uploading a number again replaces that part
    etag: str
    size_bytes: int


def is_job_id(value: str) -> bool:
    """Job ids are 32 lowercase hex digits (uuid4().hex)."""
    return bool(_JOB_ID.match(value))


def _check_job_id(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a storage file name: {name!r}")
    return name


def job_prefix(job_id: str) -> str:
    return f"jobs/{_check_job_id(job_id)}/"


def input_key(job_id: str, name: str) -> str:
    return f"{job_prefix(job_id)}inputs/{_check_name(name)}"


def segment_key(job_id: str, index: int, ext: str) -> str:
    if not 0 <= index <= 9999:
        raise ValueError(f"segment index out of range: {index}")
    return f"{job_prefix(job_id)}segments/{index:04d}.{_check_name(ext)}"


def result_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}result.mp4"


# Preflight previews and the live playlist (issue 14: the web page)
def preview_key(preview_id: str, name: str) -> str:
    """An aligned-skeleton preview of POST /animate/preflight: `previews/{id}/{name}`, kept briefly."""
    return f"previews/{_check_job_id(preview_id)}/{_check_name(name)}"


def live_key(job_id: str, name: str | None = None) -> str:
    """`jobs/{id}/live.m3u8` (name None), or one of its fragments `jobs/{id}/live/{name}`."""
    if name is None:
        return f"{job_prefix(job_id)}live.m3u8"
    return f"{job_prefix(job_id)}live/{_check_name(name)}"


def result_upload_key(job_id: str) -> str:
    """The multipart upload of result.mp4 a run has under way, so that the next run can abort it."""
    return f"{job_prefix(job_id)}result_upload.txt"


def manifest_key(job_id: str) -> str:
    """What produced the result (worker/manifest.py), next to it."""
    return f"{job_prefix(job_id)}manifest.json"


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class Storage(ABC):
    """What the API and the workers need from object storage."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
        """Upload a local file (multipart when large); returns its size and sha256."""

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> None:
        """Download an object to `dest` (written atomically); ObjectNotFound if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a prefix (e.g. a job's inputs); returns how many."""

    @abstractmethod
    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A time-limited GET URL, or None when the backend cannot make one (serve local_path)."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file behind a key when it is on this machine's disk, else None."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the backend answers (readiness check)."""

    # Multipart uploads: an object written part by part while it is being made (the result MP4,
    # `service/storage/progressive.py`). Every part but the last has at least MIN_PART_BYTES.
    @abstractmethod
    def create_multipart(self, key: str, content_type: str = "application/octet-stream") -> str:
        """Start a multipart upload to `key`; returns its upload id."""

    @abstractmethod
    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        """Upload part `number` (from 1); the same number again replaces the part."""

    @abstractmethod
    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        """The object becomes the parts, in order of their numbers (each number once)."""

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and its parts; an unknown or finished upload is no error."""

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> StoredObject:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "blob"
            path.write_bytes(data)
            return self.put_file(key, path, content_type)

    def get_bytes(self, key: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "blob"
            self.get_file(key, path)
            return path.read_bytes()

    def copy(self, source: str, dest: str, content_type: str = "application/octet-stream") -> None:
        """Copy one object to another key (a re-render takes its parent's inputs and segments);
        ObjectNotFound if `source` is absent. Backends that can copy without a download override it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "blob"
            self.get_file(source, path)
            self.put_file(dest, path, content_type)


class LocalStorage(Storage):
    """A directory on disk: for development and single-machine runs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if key.startswith("/") or not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"key escapes the storage root: {key!r}")
        return path

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
        dest = self._path(key)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)  # readers never see a half-written object
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageUnavailable(f"cannot write {key} under {self.root}: {exc}") from exc
        size, sha = file_digest(dest)
        return StoredObject(key, size, sha)

    def get_file(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(key)
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        folder = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        base = self._path(folder.rstrip("/")) if folder.strip("/") else self.root
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith("."))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        return len(keys)

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    # Multipart: each part is a hidden file under .multipart/{upload id}/ (never listed: list() skips
    # names that start with a dot); completing joins them beside the object and renames the result.
    def create_multipart(self, key: str, content_type: str = "application/octet-stream") -> str:
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(upload_id)
        try:
            folder.mkdir(parents=True)
            (folder / ".key").write_text(key)
        except OSError as exc:
            raise StorageUnavailable(f"cannot start an upload under {self.root}: {exc}") from exc
        self._path(key)  # a key that escapes the root is refused now, not at the end
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        folder = self._upload(key, upload_id)
        if not 1 <= number <= 10000:
            raise ValueError(f"part numbers go from 1 to 10000, got {number}")
        part = folder / f".{number:05d}"
        tmp = folder / f".{number:05d}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, part)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write part {number} of {key}: {exc}") from exc
        return UploadedPart(number, hashlib.md5(data).hexdigest(), len(data))

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        folder = self._upload(key, upload_id)
        numbers = [part.number for part in parts]
        if not parts or numbers != sorted(set(numbers)):
            raise ValueError(f"parts must be listed once each, in ascending order, got {numbers}")
        files = [folder / f".{number:05d}" for number in numbers]
        for part, file in zip(parts, files):
            if not file.is_file() or hashlib.md5(file.read_bytes()).hexdigest() != part.etag:
                raise ValueError(f"part {part.number} of {key} is not the one uploaded (etag {part.etag})")
        if any(file.stat().st_size < MIN_PART_BYTES for file in files[:-1]):
            raise ValueError(f"every part but the last needs at least {MIN_PART_BYTES} bytes (as on S3)")
        dest = self._path(key)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                for file in files:
                    with open(file, "rb") as part_file:
                        shutil.copyfileobj(part_file, out, _CHUNK)
            os.replace(tmp, dest)  # readers never see a half-joined object
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageUnavailable(f"cannot write {key} under {self.root}: {exc}") from exc
        shutil.rmtree(folder, ignore_errors=True)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        folder = self._upload_dir(upload_id)
        if folder.is_dir():
            self._upload(key, upload_id)  # refuses another key's upload
            shutil.rmtree(folder, ignore_errors=True)

    def _upload_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.match(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self.root / ".multipart" / upload_id

    def _upload(self, key: str, upload_id: str) -> Path:
        """The folder of an upload under way to `key`."""
        folder = self._upload_dir(upload_id)
        try:
            started_for = (folder / ".key").read_text()
        except FileNotFoundError:
            raise ObjectNotFound(f"no multipart upload {upload_id} (finished or aborted)") from None
        if started_for != key:
            raise ValueError(f"upload {upload_id} is for {started_for!r}, not {key!r}")
        return folder

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ping-"):
                pass
        except OSError as exc:
            raise StorageUnavailable(f"local storage at {self.root} is not writable: {exc}") from exc


def make_storage(settings: CommonSettings) -> Storage:
    """The backend the settings name (UNIANIMATE_STORAGE=local|s3)."""
    if settings.storage == "local":
        return LocalStorage(settings.local_storage_dir)
    from service.storage.s3 import S3Storage  # boto3 is loaded only when S3 is used

    return S3Storage.from_settings(settings)
