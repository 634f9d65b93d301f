"""pytest fixtures around the real servers: load with `pytest_plugins = ["tests.support.fixtures"]`."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, redis_server
from tests.support.seaweedfs import SeaweedS3, seaweedfs_s3


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    """One real redis-server for the whole session."""
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_service: RedisServer) -> Iterator[str]:
    """The session's Redis, flushed after each test so tests do not see each other's keys."""
    yield redis_service.url
    redis_service.client().flushall()


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    """One real SeaweedFS S3 gateway for the whole session."""
    with seaweedfs_s3() as server:
        yield server


@pytest.fixture(scope="session")
def s3_bucket(seaweed_s3: SeaweedS3) -> str:
    """One bucket for the session: SeaweedFS gives every bucket its own volumes, so a bucket per
    test would soon exhaust them. Tests keep apart by using fresh job ids (key prefixes)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    seaweed_s3.client().create_bucket(Bucket=name)
    return name
