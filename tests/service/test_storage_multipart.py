"""Multipart uploads on the local backend, and a growing file uploaded in parts (service/storage/progressive.py)."""
from __future__ import annotations

import os

import pytest

from service.storage.objects import MIN_PART_BYTES, LocalStorage, ObjectNotFound
from service.storage.progressive import ProgressiveUpload

MiB = 1024 * 1024
KEY = "jobs/" + "c" * 32 + "/result.mp4"
RECORD = "jobs/" + "c" * 32 + "/result_upload.txt"


def test_parts_join_in_order_and_a_part_uploaded_again_replaces_itself(tmp_path):
    storage = LocalStorage(tmp_path)
    upload_id = storage.create_multipart(KEY, "video/mp4")
    first, second = os.urandom(MIN_PART_BYTES), b"the end"
    storage.upload_part(KEY, upload_id, 1, b"x" * MIN_PART_BYTES)
    parts = [storage.upload_part(KEY, upload_id, 2, second), storage.upload_part(KEY, upload_id, 1, first)]
    assert not storage.exists(KEY), "nothing is visible before the upload completes"
    assert storage.list("") == [], "parts are never listed"
    storage.complete_multipart(KEY, upload_id, sorted(parts, key=lambda part: part.number))
    assert (tmp_path / KEY).read_bytes() == first + second
    assert not any((tmp_path / ".multipart").iterdir()), "the parts are gone"


def test_abort_drops_the_parts_and_may_repeat(tmp_path):
    storage = LocalStorage(tmp_path)
    upload_id = storage.create_multipart(KEY)
    storage.upload_part(KEY, upload_id, 1, b"data")
    storage.abort_multipart(KEY, upload_id)
    storage.abort_multipart(KEY, upload_id)  # an aborted upload is no error
    assert not storage.exists(KEY) and not any((tmp_path / ".multipart").iterdir())
    with pytest.raises(ObjectNotFound):
        storage.upload_part(KEY, upload_id, 2, b"late")


@pytest.mark.parametrize("problem", ["small part", "wrong etag", "out of order", "other key", "bad id"])
def test_mistakes_are_refused_as_s3_would(tmp_path, problem):
    storage = LocalStorage(tmp_path)
    upload_id = storage.create_multipart(KEY)
    parts = [storage.upload_part(KEY, upload_id, 1, b"small"), storage.upload_part(KEY, upload_id, 2, b"end")]
    with pytest.raises(ValueError):
        if problem == "small part":
            storage.complete_multipart(KEY, upload_id, parts)
        elif problem == "wrong etag":
            storage.complete_multipart(KEY, upload_id, [parts[0].__class__(1, "0" * 32, 5)])
        elif problem == "out of order":
            storage.complete_multipart(KEY, upload_id, parts[::-1])
        elif problem == "other key":
            storage.upload_part(KEY + ".other", upload_id, 3, b"x")
        else:
            storage.upload_part(KEY, "../../etc", 1, b"x")
    assert not storage.exists(KEY)


class Counting(LocalStorage):
    """Records which parts were uploaded, in order."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.uploaded: list[int] = []
        self.puts: list[str] = []

    def upload_part(self, key, upload_id, number, data):
        self.uploaded.append(number)
        return super().upload_part(key, upload_id, number, data)

    def put_file(self, key, path, content_type="application/octet-stream"):
        self.puts.append(key)
        return super().put_file(key, path, content_type)


def grow(path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def test_a_growing_file_goes_up_in_parts_and_part_1_again_after_its_header_changed(tmp_path):
    storage, growing, final = Counting(tmp_path / "store"), tmp_path / "out.mp4.partial", tmp_path / "out.mp4"
    upload = ProgressiveUpload(storage, KEY, growing, part_bytes=5 * MiB, record_key=RECORD)
    upload.advance()  # no file yet: nothing to do
    body = os.urandom(13 * MiB)
    grow(growing, b"HEADER-0" + body[:4 * MiB])
    upload.advance()
    assert storage.uploaded == [] and upload.upload_id is None, "less than a part: nothing yet"
    grow(growing, body[4 * MiB:12 * MiB])
    upload.advance()
    assert storage.uploaded == [1, 2] and storage.get_bytes(RECORD).decode() == upload.upload_id
    grow(growing, body[12 * MiB:])
    with open(growing, "r+b") as fh:  # closing the file patches its header, in part 1
        fh.write(b"HEADER-1")
    os.replace(growing, final)
    stored = upload.finish(final)
    assert storage.uploaded == [1, 2, 3, 1], "the rest as the last part, then part 1 again"
    assert (tmp_path / "store" / KEY).read_bytes() == final.read_bytes() == b"HEADER-1" + body
    assert stored.size_bytes == len(body) + 8 and not storage.exists(RECORD)


def test_part_1_is_not_sent_again_when_the_header_did_not_change(tmp_path):
    storage, path = Counting(tmp_path / "store"), tmp_path / "out.bin"
    upload = ProgressiveUpload(storage, KEY, path, part_bytes=5 * MiB, record_key=RECORD)
    grow(path, os.urandom(6 * MiB))
    upload.advance()
    upload.finish(path)
    assert storage.uploaded == [1, 2] and (tmp_path / "store" / KEY).read_bytes() == path.read_bytes()


def test_a_small_file_is_put_whole_at_the_end(tmp_path):
    storage, path = Counting(tmp_path / "store"), tmp_path / "out.bin"
    upload = ProgressiveUpload(storage, KEY, path, part_bytes=5 * MiB, record_key=RECORD)
    grow(path, b"small video")
    upload.advance()
    stored = upload.finish(path)
    assert storage.uploaded == [] and storage.puts == [KEY] and stored.size_bytes == 11


def test_an_aborted_upload_leaves_no_parts_and_the_next_run_aborts_a_dead_runs_upload(tmp_path):
    storage, path = LocalStorage(tmp_path / "store"), tmp_path / "out.bin"
    grow(path, os.urandom(5 * MiB))
    dead = ProgressiveUpload(storage, KEY, path, part_bytes=5 * MiB, record_key=RECORD)
    dead.advance()  # ... and the process dies here: its parts stay, and so does the record
    parts = tmp_path / "store" / ".multipart"
    assert [p.name for p in parts.iterdir()] == [dead.upload_id]
    ProgressiveUpload(storage, KEY, path, part_bytes=5 * MiB, record_key=RECORD).abort_stale()
    assert not any(parts.iterdir()) and not storage.exists(RECORD)
    failing = ProgressiveUpload(storage, KEY, path, part_bytes=5 * MiB, record_key=RECORD)
    failing.advance()
    failing.abort()  # a run that fails or is canceled
    failing.abort()
    assert not any(parts.iterdir()) and not storage.exists(RECORD) and not storage.exists(KEY)


def test_parts_smaller_than_s3_allows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        ProgressiveUpload(LocalStorage(tmp_path), KEY, tmp_path / "f", part_bytes=MiB, record_key=RECORD)
