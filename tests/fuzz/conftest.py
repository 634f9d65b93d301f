"""Schema fuzzing runs against the real app and a real redis-server (tests/support)."""
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (pytest fixtures)
