"""Configuration from the environment (prefix UNIANIMATE_).

`CommonSettings` holds what the API and the workers must agree on (Redis, object storage);
the worker's settings class subclasses it. `ApiSettings` adds what only the HTTP process uses.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


def _bundled_examples() -> Path | None:
    """The example inputs shipped with the code: the checkout's `examples/` (a source tree or an
    editable install), else `<venv>/share/unianimate/examples` (where the Dockerfile copies them)."""
    for folder in (Path(__file__).resolve().parents[1] / "examples",
                   Path(sys.prefix) / "share" / "unianimate" / "examples"):
        if folder.is_dir():
            return folder
    return None


def _split_csv(value: object) -> object:
    """Lists come from the environment as comma-separated text: "a,b" -> ("a", "b")."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UNIANIMATE_", extra="ignore", frozen=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="job records, progress streams")
    broker_url: str | None = Field(None, description="Celery broker; defaults to redis_url")
    redis_timeout_s: float = Field(5.0, gt=0, description="socket timeout for Redis calls")

    storage: Literal["s3", "local"] = "local"
    local_storage_dir: Path = Path(".run/storage")
    s3_endpoint: str | None = Field(None, description="e.g. http://127.0.0.1:8333; None = AWS")
    s3_public_endpoint: str | None = Field(
        None, description="endpoint written into presigned URLs when clients reach S3 by another name")
    s3_bucket: str = "unianimate"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_create_bucket: bool = Field(False, description="create the bucket at startup if missing")
    s3_max_attempts: int = Field(5, ge=1, le=20)
    s3_multipart_threshold_bytes: int = Field(16 * MiB, ge=5 * MiB)
    s3_multipart_chunk_bytes: int = Field(16 * MiB, ge=5 * MiB)
    presign_ttl_s: int = Field(3600, ge=60, le=7 * 24 * 3600)

    webhook_allow_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="hosts that webhooks and input URLs may reach on private addresses "
                                 "(and over plain http); see service.netguard")

    # per-key limits (issue 16; docs/operations.md "Per-key limits"). 0 = no limit. Each key may have
    # its own values (`unianimate keys set`); the workers read key_max_running, the API the rest.
    key_rate_per_s: float = Field(20.0, ge=0, description="requests per second per API key (token bucket)")
    key_burst: int = Field(40, ge=1, description="requests a key may make at once after a quiet spell")
    key_max_queued: int = Field(100, ge=0, description="jobs of one key waiting to start; more are refused (429)")
    key_max_running: int = Field(0, ge=0, description="jobs of one key on the workers at once; its next job "
                                                      "waits (default: none, the fair order shares the workers)")
    key_gpu_seconds_per_day: float = Field(0.0, ge=0, description="render seconds per key per UTC day; "
                                                                  "submissions past it are refused (429)")

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _csv_hosts(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url


class ApiSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="comma-separated bearer keys; empty = no authentication")

    max_upload_bytes: int = Field(512 * MiB, ge=1024, description="whole request body, counted as it streams")
    max_json_bytes: int = Field(32 * MiB, ge=1024, description="one keypoint JSON document")
    max_json_depth: int = Field(16, ge=4, le=64)
    max_image_pixels: int = Field(4096 * 4096, ge=64 * 64)
    max_video_side: int = Field(4096, ge=64)
    max_video_frames: int = Field(36_000, ge=1)
    max_video_duration_s: float = Field(1200.0, gt=0)

    fetch_timeout_s: float = Field(30.0, gt=0, description="the whole download of one URL input of a "
                                                           "JSON request, however the server paces it")

    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    # at least a day: a client polling a finished job, or replaying its Idempotency-Key, still finds it
    job_retention_s: int = Field(7 * 24 * 3600, ge=24 * 3600,
                                 description="how long a finished job's record and events are kept")
    sse_keepalive_s: float = Field(15.0, gt=0)
    batch_max_references: int = Field(8, ge=1, le=64, description="reference images one POST /animate/batch "
                                                                   "may name (one job each)")
    enqueue_timeout_s: float = Field(5.0, gt=0)

    # POST /animate/preflight and the web page (issue 14)
    preview_retention_s: int = Field(3600, ge=60, le=7 * 24 * 3600,
                                     description="how long a preflight's aligned-skeleton preview is kept")
    worker_classes: Annotated[tuple[str, ...], NoDecode] = Field(
        ("nvidia-h100-80gb", "nvidia-a100-80gb", "nvidia-l4-24gb"),
        description="GPU classes the preflight estimates time and memory for, and POST /animate checks "
                    "a segment fits at least one of (service/preflight/estimate.py)")
    examples_dir: Path | None = Field(
        default_factory=_bundled_examples,
        description="folder the web page's example inputs are served from (GET /examples/{name}); default: "
                    "the checkout's examples/, else the one the image installs under the venv's share/")

    @field_validator("worker_classes", mode="before")
    @classmethod
    def _csv_classes(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _csv_keys(cls, value: object) -> object:
        return _split_csv(value)

    @model_validator(mode="after")
    def _retention_covers_replays(self) -> ApiSettings:
        # a replayed Idempotency-Key must find its job, not a 409 "still in progress" forever
        if self.job_retention_s < self.idempotency_ttl_s:
            raise ValueError(f"job_retention_s ({self.job_retention_s}) must be at least idempotency_ttl_s "
                             f"({self.idempotency_ttl_s})")
        return self
