"""API tests run against a real redis-server (tests/support) and local-directory storage."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.settings import ApiSettings
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (pytest fixtures)
from tests.support.media import keypoint_upload_files


@pytest.fixture
def settings(tmp_path, redis_url) -> ApiSettings:  # noqa: F811
    return ApiSettings(redis_url=redis_url, storage="local", local_storage_dir=tmp_path / "storage",
                       sse_keepalive_s=0.2, enqueue_timeout_s=1.0)


@pytest.fixture
def make_client(settings) -> Iterator:
    """Build a TestClient with settings overrides, closed after the test."""
    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        client = TestClient(create_app(ApiSettings(**{**dict(settings), **overrides})),
                            raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def state(client):
    return client.app.state.services


keypoint_upload = keypoint_upload_files
