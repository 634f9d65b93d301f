"""Hostile-input tests run against the real app, a real redis-server and local storage
(the same fixtures as tests/service). They send hundreds of requests with one key as fast as they
can, so the per-key rate and queue limits are off here; tests/service/test_key_limits.py tests them."""
import pytest

from service.settings import ApiSettings
from tests.service.conftest import client, make_client, state  # noqa: F401  (pytest fixtures)
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (pytest fixtures)


@pytest.fixture
def settings(tmp_path, redis_url) -> ApiSettings:  # noqa: F811
    return ApiSettings(redis_url=redis_url, storage="local", local_storage_dir=tmp_path / "storage",
                       sse_keepalive_s=0.2, enqueue_timeout_s=1.0, key_rate_per_s=0, key_max_queued=0)
