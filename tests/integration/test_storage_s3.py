"""S3 storage against a real SeaweedFS (`weed server -s3`) started by tests/support."""
import hashlib
import os
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.jobs.record import JobStatus, Result
from service.settings import ApiSettings, CommonSettings
from service.storage.objects import (
    ObjectNotFound,
    StorageUnavailable,
    input_key,
    job_prefix,
    make_storage,
    result_key,
)
from service.storage.s3 import S3Storage
from tests.support.fixtures import redis_service, redis_url, s3_bucket, seaweed_s3  # noqa: F401
from tests.support.media import keypoint_upload_files

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def s3_settings(server, bucket, **extra) -> dict:
    return {"storage": "s3", "s3_endpoint": server.endpoint, "s3_bucket": bucket, "s3_access_key": server.access_key,
            "s3_secret_key": server.secret_key, "s3_region": server.region, "s3_max_attempts": 2, **extra}


@pytest.fixture
def job_id():
    return uuid.uuid4().hex


@pytest.fixture
def storage(seaweed_s3, s3_bucket):  # noqa: F811
    return make_storage(CommonSettings(**s3_settings(seaweed_s3, s3_bucket, s3_multipart_threshold_bytes=5 * MiB,
                                                     s3_multipart_chunk_bytes=5 * MiB)))


def test_sha256_round_trip(storage, job_id, tmp_path):
    data = os.urandom(300_000)
    stored = storage.put_bytes(input_key(job_id, "reference_image.png"), data, "image/png")
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size_bytes == len(data)
    storage.get_file(stored.key, tmp_path / "back")
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == stored.sha256
    assert storage.exists(stored.key) and storage.local_path(stored.key) is None


def test_multipart_upload_of_a_large_file(storage, job_id, tmp_path):
    path = tmp_path / "big.mp4"
    path.write_bytes(os.urandom(11 * MiB))
    stored = storage.put_file(result_key(job_id), path, "video/mp4")
    head = storage.client.head_object(Bucket=storage.bucket, Key=stored.key)
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MiB parts: it really was multipart
    assert head["ContentLength"] == 11 * MiB and head["ContentType"] == "video/mp4"
    assert hashlib.sha256(storage.get_bytes(stored.key)).hexdigest() == stored.sha256


def test_presigned_url_downloads_without_credentials(storage, job_id):
    data = b"presigned video bytes"
    storage.put_bytes(result_key(job_id), data, "video/mp4")
    url = storage.presigned_url(result_key(job_id), 300)
    assert "X-Amz-Signature" in url
    assert httpx.get(url, timeout=10).content == data
    unsigned = httpx.get(url.split("?")[0], timeout=10)
    assert unsigned.status_code in (401, 403)  # the identity config requires signed requests


def test_list_delete_and_missing(storage, job_id):
    for name in ("reference_image.png", "pose_keypoints.json"):
        storage.put_bytes(input_key(job_id, name), b"x")
    storage.put_bytes(result_key(job_id), b"y")
    assert storage.list(f"{job_prefix(job_id)}inputs/") == [input_key(job_id, "pose_keypoints.json"),
                                                          input_key(job_id, "reference_image.png")]
    assert storage.delete_prefix(job_prefix(job_id)) == 3
    assert storage.list(job_prefix(job_id)) == []
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(result_key(job_id))
    assert not storage.exists(result_key(job_id))


def test_ping_and_bucket_creation(seaweed_s3):  # noqa: F811
    storage = make_storage(CommonSettings(**s3_settings(seaweed_s3, f"new-{uuid.uuid4().hex[:8]}")))
    with pytest.raises(StorageUnavailable, match="does not exist"):
        storage.ping()
    storage.ensure_bucket()
    storage.ping()


def test_unreachable_endpoint_is_storage_unavailable(job_id):
    storage = S3Storage.from_settings(CommonSettings(storage="s3", s3_endpoint="http://127.0.0.1:1",
                                                     s3_access_key="a", s3_secret_key="b", s3_max_attempts=1))
    with pytest.raises(StorageUnavailable):
        storage.ping()
    with pytest.raises(StorageUnavailable):
        storage.put_bytes(result_key(job_id), b"x")


def test_api_redirects_to_a_presigned_video(seaweed_s3, s3_bucket, redis_url):  # noqa: F811
    settings = ApiSettings(redis_url=redis_url, **s3_settings(seaweed_s3, s3_bucket))
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/animate", files=keypoint_upload_files()).json()["job_id"]
        state = client.app.state.services
        assert state.storage.exists(input_key(job_id, "reference_image.png"))
        stored = state.storage.put_bytes(result_key(job_id), b"mp4 bytes", "video/mp4")
        state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
        state.jobs.transition(job_id, JobStatus.SUCCEEDED, result=Result(
            frames=1, fps=8, width=64, height=64, duration_s=0.125, size_bytes=stored.size_bytes,
            sha256=stored.sha256, key=stored.key))
        response = client.get(f"/jobs/{job_id}/video", follow_redirects=False)
        assert response.status_code == 302
        assert httpx.get(response.headers["location"], timeout=10).content == b"mp4 bytes"
        assert client.get(f"/jobs/{job_id}").json()["result"]["url"].startswith(seaweed_s3.endpoint)
        assert client.get("/readyz").json()["checks"]["storage"] == "ok"
