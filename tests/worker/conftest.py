"""Worker tests run against a real redis-server (tests/support) and local-directory storage."""
from __future__ import annotations

import pytest

from service.jobs.store import JobStore
from service.storage.objects import LocalStorage
from service.webhooks.outbox import WebhookOutbox
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (pytest fixtures)
from tests.worker.fakes import StubRenderer
from worker.render_job import WorkerContext
from worker.settings import WorkerSettings


@pytest.fixture
def jobs(redis_url) -> JobStore:  # noqa: F811
    return JobStore.from_url(redis_url)


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def sent_webhooks() -> list[str]:
    """Event ids the outbox enqueued for delivery."""
    return []


@pytest.fixture
def make_context(jobs, storage, redis_url, tmp_path, sent_webhooks):  # noqa: F811
    def make(renderer=None, **settings) -> WorkerContext:
        config = WorkerSettings(_env_file=None, redis_url=redis_url, model="tiny", storage="local",
                                local_storage_dir=tmp_path / "storage", lease_ttl_s=5, progress_interval_s=0,
                                **settings)
        outbox = WebhookOutbox(jobs.redis, sent_webhooks.append, prefix=jobs.prefix, progress_interval_s=0)
        return WorkerContext(config, jobs, storage, renderer or StubRenderer(), outbox, name="test-worker")
    return make
