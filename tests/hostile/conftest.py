"""Hostile-input tests run against the real app, a real redis-server and local storage
(the same fixtures as tests/service)."""
from tests.service.conftest import client, make_client, settings, state  # noqa: F401  (pytest fixtures)
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (pytest fixtures)
