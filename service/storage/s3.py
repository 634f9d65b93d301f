"""The S3 backend of `Storage` (AWS, MinIO, SeaweedFS) through boto3."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.settings import CommonSettings
from service.storage.objects import (
    ObjectNotFound,
    Storage,
    StorageMisconfigured,
    StorageUnavailable,
    StoredObject,
    UploadedPart,
    file_digest,
)

_MISSING = {"404", "NoSuchKey", "NotFound"}
# Refusals that only an operator can fix (the bucket or the credentials in the settings), by error code.
# HEAD requests have no error body, so S3 reports them by status alone ("403", "301").
_MISCONFIGURED = {
    "NoSuchBucket": "does not exist (UNIANIMATE_S3_BUCKET)",
    "InvalidBucketName": "is not a valid bucket name (UNIANIMATE_S3_BUCKET)",
    "AccessDenied": "denies access to these credentials",
    "AllAccessDisabled": "has all access disabled",
    "403": "denies access to these credentials (HTTP 403)",
    "InvalidAccessKeyId": "does not know the access key (UNIANIMATE_S3_ACCESS_KEY)",
    "SignatureDoesNotMatch": "rejects the secret key (UNIANIMATE_S3_SECRET_KEY)",
    "ExpiredToken": "rejects the expired credentials",
    "InvalidToken": "rejects the credentials' session token",
    "AccountProblem": "reports a problem with the account",
    "PermanentRedirect": "is in another region (UNIANIMATE_S3_REGION)",
    "301": "is in another region (UNIANIMATE_S3_REGION, HTTP 301)",
    "AuthorizationHeaderMalformed": "expects another region (UNIANIMATE_S3_REGION)",
}


def _client_config(max_attempts: int) -> Config:
    return Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5, read_timeout=60,
        s3={"addressing_style": "path"},  # MinIO and SeaweedFS have no per-bucket DNS names
        signature_version="s3v4",  # also for presigned URLs (boto3 may default those to SigV2)
        # S3-compatible servers may not support the newer default CRC checksums
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Storage(Storage):
    def __init__(self, bucket: str, client, presign_client=None, transfer: TransferConfig | None = None) -> None:
        self.bucket = bucket
        self.client = client
        self.presign_client = presign_client or client
        self.transfer = transfer or TransferConfig()

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> S3Storage:
        def client(endpoint: str | None):
            return boto3.session.Session().client(
                "s3", endpoint_url=endpoint, region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
                aws_secret_access_key=(settings.s3_secret_key.get_secret_value()
                                       if settings.s3_secret_key else None),
                config=_client_config(settings.s3_max_attempts))

        transfer = TransferConfig(multipart_threshold=settings.s3_multipart_threshold_bytes,
                                  multipart_chunksize=settings.s3_multipart_chunk_bytes)
        presign = client(settings.s3_public_endpoint) if settings.s3_public_endpoint else None
        return cls(settings.s3_bucket, client(settings.s3_endpoint), presign, transfer)

    def _call(self, fn, *args, **kwargs):
        """Run a boto3 call, mapping failures to ObjectNotFound / StorageUnavailable (or its
        StorageMisconfigured); any other refusal is a request we got wrong, and propagates."""
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            mapped = self._client_error(exc, kwargs.get("Key") or (args[1] if len(args) > 1 else ""))
            if mapped is exc:
                raise
            raise mapped from exc
        except S3UploadFailedError as exc:  # upload_file wraps the failed PUT's ClientError (after retries)
            cause = exc.__context__
            if isinstance(cause, ClientError):
                mapped = self._client_error(cause, "")
                if isinstance(mapped, StorageUnavailable):
                    raise mapped from exc
            raise StorageUnavailable(f"S3 upload failing: {exc}") from exc
        except (BotoCoreError, RetriesExceededError) as exc:  # the latter: download_file's reads gave up
            raise StorageUnavailable(f"S3 unreachable or failing: {exc}") from exc

    def _client_error(self, exc: ClientError, key: str) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return ObjectNotFound(key)
        if code in _MISCONFIGURED:
            return StorageMisconfigured(f"bucket {self.bucket!r} {_MISCONFIGURED[code]}")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError"}:
            return StorageUnavailable(f"S3 {code or status}: {exc}")
        return exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (UNIANIMATE_S3_CREATE_BUCKET)."""
        try:
            self._call(self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:
            self._call(self.client.create_bucket, Bucket=self.bucket)

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> StoredObject:
        # upload_file switches to a multipart upload above transfer.multipart_threshold
        size, sha = file_digest(path)
        self._call(self.client.upload_file, str(path), self.bucket, key, Config=self.transfer,
                   ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha}})
        return StoredObject(key, size, sha)

    def get_file(self, key: str, dest: Path) -> None:
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            self._call(self.client.download_file, self.bucket, key, str(tmp), Config=self.transfer)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Bucket=self.bucket, Key=key)
            return True
        except ObjectNotFound:
            return False

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def copy(self, source: str, dest: str, content_type: str = "application/octet-stream") -> None:
        """Server-side: the bytes never pass through this process (objects up to 5 GB, far above
        any input or segment)."""
        self._call(self.client.copy_object, Bucket=self.bucket, Key=dest,
                   CopySource={"Bucket": self.bucket, "Key": source})

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            self._call(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)

    def create_multipart(self, key: str, content_type: str = "application/octet-stream") -> str:
        answer = self._call(self.client.create_multipart_upload, Bucket=self.bucket, Key=key,
                            ContentType=content_type)
        return answer["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        answer = self._call(self.client.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id,
                            PartNumber=number, Body=data)
        return UploadedPart(number, answer["ETag"], len(data))

    def complete_multipart(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        listed = [{"PartNumber": part.number, "ETag": part.etag} for part in parts]
        self._call(self.client.complete_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id,
                   MultipartUpload={"Parts": listed})

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ObjectNotFound:  # a bare 404: already aborted or completed
            pass
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        return self.presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)

    def local_path(self, key: str) -> Path | None:
        return None

    def ping(self) -> None:
        try:
            self._call(self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound as exc:  # HEAD has no body: a missing bucket is a bare 404
            raise StorageMisconfigured(f"bucket {self.bucket!r} does not exist (UNIANIMATE_S3_BUCKET)") from exc
        except ClientError as exc:
            raise StorageMisconfigured(f"bucket {self.bucket!r} is not accessible: {exc}") from exc
