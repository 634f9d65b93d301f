"""S3 refusing the service (no bucket, bad credentials) or giving up on a download is a storage
outage (503 from the API, logged), never a bare 500. Fakes raise boto3's exact exceptions; one
test signs with a wrong secret against a real SeaweedFS."""
import logging

import pytest
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import SecretStr

from service.settings import ApiSettings, CommonSettings
from service.storage.objects import ObjectNotFound, StorageMisconfigured, StorageUnavailable, make_storage
from service.storage.s3 import S3Storage
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem
from tests.support.fixtures import s3_bucket, seaweed_s3  # noqa: F401  (pytest fixtures)


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def upload_failed(cause: ClientError) -> S3UploadFailedError:
    """What boto3's upload_file raises: an S3UploadFailedError raised while handling the ClientError."""
    try:
        raise cause
    except ClientError as exc:
        try:
            raise S3UploadFailedError(f"Failed to upload f to b/k: {exc}")  # no "from": as boto3 does
        except S3UploadFailedError as wrapped:
            return wrapped


class FakeClient:
    """Each boto3 method the storage uses raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise self.error
        return call

    def get_paginator(self, name: str):
        return self  # as in boto3, making the paginator sends nothing; paginate() is what fails


def storage_raising(error: Exception) -> S3Storage:
    return S3Storage("media-bucket", FakeClient(error))


@pytest.mark.parametrize("code, status, words", [
    ("NoSuchBucket", 404, "does not exist"),
    ("AccessDenied", 403, "denies access"),
    ("403", 403, "denies access"),
    ("InvalidAccessKeyId", 403, "UNIANIMATE_S3_ACCESS_KEY"),
    ("SignatureDoesNotMatch", 403, "UNIANIMATE_S3_SECRET_KEY"),
    ("PermanentRedirect", 301, "another region"),
])
def test_refusals_an_operator_must_fix_are_storage_misconfigured(tmp_path, code, status, words):
    src = tmp_path / "f"
    src.write_bytes(b"x")
    calls = {
        "get": lambda s: s.get_file("jobs/k", tmp_path / "out"),
        "exists": lambda s: s.exists("jobs/k"),
        "list": lambda s: s.list("jobs/"),
    }
    for name, call in calls.items():
        with pytest.raises(StorageMisconfigured, match=words) as caught:
            call(storage_raising(client_error(code, status)))
        assert "'media-bucket'" in caught.value.reason, name
    with pytest.raises(StorageMisconfigured, match=words):
        storage_raising(upload_failed(client_error(code, status, "PutObject"))).put_file("jobs/k", src)


def test_missing_objects_and_server_errors_keep_their_meaning(tmp_path):
    with pytest.raises(ObjectNotFound):
        storage_raising(client_error("NoSuchKey", 404)).get_file("jobs/k", tmp_path / "out")
    with pytest.raises(StorageUnavailable) as caught:
        storage_raising(client_error("InternalError", 500)).get_file("jobs/k", tmp_path / "out")
    assert not isinstance(caught.value, StorageMisconfigured)
    with pytest.raises(ClientError):  # a request we built wrong is a bug, not an outage
        storage_raising(client_error("InvalidArgument", 400)).get_file("jobs/k", tmp_path / "out")


def test_a_download_whose_retries_ran_out_is_unavailable(tmp_path):
    error = RetriesExceededError(ReadTimeoutError(endpoint_url="http://s3"))
    with pytest.raises(StorageUnavailable, match="unreachable or failing"):
        storage_raising(error).get_file("jobs/k", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_api_answers_503_and_logs_the_bucket_problem(make_client, monkeypatch, caplog):
    client = make_client()
    monkeypatch.setattr(client.app.state.services, "storage",
                        storage_raising(upload_failed(client_error("NoSuchBucket", 404, "PutObject"))))
    with caplog.at_level(logging.ERROR, logger="service.api.problems"):
        response = client.post("/animate", files=keypoint_upload())
    body = assert_problem(response, 503, "unavailable")
    assert "configuration problem" in body["detail"] and response.headers["retry-after"]
    assert "media-bucket" not in response.text, "bucket and setting names are for the operator's log"
    assert any(r.levelno == logging.ERROR and "misconfigured" in r.message
               and "bucket 'media-bucket' does not exist" in r.getMessage() for r in caplog.records)


def test_a_wrong_secret_against_real_s3_is_a_503(make_client, seaweed_s3, s3_bucket, tmp_path):  # noqa: F811
    settings = {"storage": "s3", "s3_endpoint": seaweed_s3.endpoint, "s3_bucket": s3_bucket,
                "s3_access_key": SecretStr(seaweed_s3.access_key), "s3_secret_key": SecretStr("wrong-secret-123"),
                "s3_max_attempts": 1}
    storage = make_storage(CommonSettings(_env_file=None, **settings))
    with pytest.raises(StorageMisconfigured, match="UNIANIMATE_S3_SECRET_KEY"):
        storage.get_file("jobs/none", tmp_path / "out")
    client = make_client(**settings)
    assert isinstance(client.app.state.services.settings, ApiSettings)
    body = assert_problem(client.post("/animate", files=keypoint_upload()), 503, "unavailable")
    assert "configuration problem" in body["detail"] and "UNIANIMATE_S3" not in body["detail"]
    assert_problem(client.get("/readyz"), 503)


@pytest.mark.parametrize("error", [client_error("NoSuchUpload", 404, "AbortMultipartUpload"),
                                   client_error("404", 404, "AbortMultipartUpload")])
def test_aborting_an_upload_that_is_gone_is_no_error(error):
    S3Storage("bucket", FakeClient(error)).abort_multipart("jobs/x/result.mp4", "upload-id")  # no raise


@pytest.mark.parametrize("call", ["create", "part", "complete", "abort"])
def test_multipart_calls_map_outages_like_the_others(call):
    storage = S3Storage("bucket", FakeClient(client_error("SlowDown", 503, "UploadPart")))
    with pytest.raises(StorageUnavailable):
        {"create": lambda: storage.create_multipart("k"),
         "part": lambda: storage.upload_part("k", "u", 1, b"data"),
         "complete": lambda: storage.complete_multipart("k", "u", []),
         "abort": lambda: storage.abort_multipart("k", "u")}[call]()
