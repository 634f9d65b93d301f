"""Multipart uploads, and a growing file uploaded in parts, against a real SeaweedFS."""
import os
import uuid

import pytest

from service.settings import CommonSettings
from service.storage.objects import make_storage, result_key, result_upload_key
from service.storage.progressive import ProgressiveUpload
from tests.integration.test_storage_s3 import s3_settings
from tests.support.fixtures import s3_bucket, seaweed_s3  # noqa: F401

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture
def storage(seaweed_s3, s3_bucket):  # noqa: F811
    return make_storage(CommonSettings(**s3_settings(seaweed_s3, s3_bucket)))


@pytest.fixture
def job_id():
    return uuid.uuid4().hex


def uploads_under_way(storage, key: str) -> list[str]:
    answer = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=key)
    return [upload["UploadId"] for upload in answer.get("Uploads", []) if upload["Key"] == key]


def test_part_1_uploaded_again_replaces_the_first(storage, job_id):
    key = result_key(job_id)
    upload_id = storage.create_multipart(key, "video/mp4")
    first, rest = os.urandom(5 * MiB), os.urandom(MiB)
    storage.upload_part(key, upload_id, 1, b"\0" * 5 * MiB)  # the header, before the file was closed
    parts = [storage.upload_part(key, upload_id, 2, rest), storage.upload_part(key, upload_id, 1, first)]
    storage.complete_multipart(key, upload_id, sorted(parts, key=lambda part: part.number))
    assert storage.get_bytes(key) == first + rest
    head = storage.client.head_object(Bucket=storage.bucket, Key=key)
    assert head["ContentType"] == "video/mp4" and head["ETag"].strip('"').endswith("-2")


def test_an_aborted_upload_leaves_nothing(storage, job_id):
    key = result_key(job_id)
    upload_id = storage.create_multipart(key)
    storage.upload_part(key, upload_id, 1, os.urandom(5 * MiB))
    assert upload_id in uploads_under_way(storage, key)
    storage.abort_multipart(key, upload_id)
    storage.abort_multipart(key, upload_id)  # aborting again is no error
    assert upload_id not in uploads_under_way(storage, key) and not storage.exists(key)


def test_a_growing_file_and_a_dead_runs_upload(storage, job_id, tmp_path):
    key, record, path = result_key(job_id), result_upload_key(job_id), tmp_path / "result.mp4"
    path.write_bytes(b"HEADER-0" + os.urandom(6 * MiB))
    dead = ProgressiveUpload(storage, key, path, part_bytes=5 * MiB, record_key=record)
    dead.advance()  # part 1 is up, then the process dies
    assert uploads_under_way(storage, key) == [dead.upload_id]

    run = ProgressiveUpload(storage, key, path, part_bytes=5 * MiB, record_key=record)
    run.abort_stale()
    assert uploads_under_way(storage, key) == [] and not storage.exists(record)
    run.advance()
    with open(path, "ab") as fh:
        fh.write(os.urandom(5 * MiB))
    run.advance()
    with open(path, "r+b") as fh:  # closing patches the header, inside part 1
        fh.write(b"HEADER-1")
    stored = run.finish(path)
    assert storage.get_bytes(key) == path.read_bytes() and stored.size_bytes == path.stat().st_size
    assert uploads_under_way(storage, key) == [] and not storage.exists(record)
