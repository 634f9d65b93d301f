"""Real worker processes that cannot do their work: a render worker whose model does not load exits
with the reason and leaves its job queued for a worker that can; a webhook worker's relay sends an
event the broker refused. A private redis-server and local storage; no API, no S3."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.checkpoints import OPEN_CLIP_FILE, SD21_FILE, UNET_FILE
from service.jobs.queue import RENDER_QUEUE, enqueue_render, make_celery
from service.jobs.record import JobStatus, Webhook
from service.jobs.store import JobStore
from service.storage.objects import LocalStorage
from service.webhooks.outbox import WebhookOutbox
from tests.integration.stack import REPO, WEBHOOK_SECRET
from tests.support.procs import running, wait_until
from tests.support.redis_server import RedisServer, redis_server
from tests.worker.fakes import store_job
from tests.worker.receiver import webhook_receiver
from worker.broker_queue import BrokerQueue

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_service() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def worker(redis: RedisServer, storage_dir: Path, *args: str, **settings: str) -> list[str]:
    unset = [arg for name in os.environ if name.startswith("UNIANIMATE_") for arg in ("-u", name)]
    env = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "UNIANIMATE_REDIS_URL": redis.url, "UNIANIMATE_STORAGE": "local",
           "UNIANIMATE_LOCAL_STORAGE_DIR": str(storage_dir), "UNIANIMATE_DEVICE": "cpu",
           "UNIANIMATE_LEASE_TTL_S": "2", "UNIANIMATE_PROGRESS_INTERVAL_S": "0", **settings}
    return ["env", *unset, *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "cli.main", "worker",
            *args]


def damaged_checkpoints(folder: Path) -> Path:
    """Every released file is there by name (the start-up check passes), none is a checkpoint."""
    folder.mkdir()
    for name in (UNET_FILE, SD21_FILE, OPEN_CLIP_FILE):
        (folder / name).write_bytes(b"not a checkpoint\n")
    return folder


def test_a_worker_whose_model_does_not_load_exits_and_its_job_waits(redis_service, tmp_path):
    jobs, storage = JobStore.from_url(redis_service.url), LocalStorage(tmp_path / "storage")
    job = store_job(jobs, storage)
    enqueue_render(make_celery(redis_service.url), job.id)
    log = tmp_path / "broken.log"
    argv = worker(redis_service, tmp_path / "storage", UNIANIMATE_CHECKPOINT_DIR=str(damaged_checkpoints(
        tmp_path / "checkpoints")))
    with running(argv, log, REPO) as broken:
        try:
            status = broken.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker kept running without a model; log:\n{log.read_text()[-3000:]}")
    output = log.read_text(errors="replace")
    assert status == 1, output[-3000:]
    assert "unianimate worker: render process 0 could not load the model: CheckpointError" in output
    assert UNET_FILE in output.rsplit("unianimate worker:", 1)[1], "the message names the damaged file"
    assert jobs.get(job.id).status is JobStatus.QUEUED and jobs.get(job.id).runs == 0
    assert BrokerQueue(jobs.redis, RENDER_QUEUE).waiting([job.id]) == {job.id}, "its message is back in the queue"

    with running(worker(redis_service, tmp_path / "storage", UNIANIMATE_MODEL="tiny"), tmp_path / "tiny.log",
                 REPO) as healthy:
        wait_until(lambda: jobs.get(job.id).status.terminal, healthy, 180, "the job", tmp_path / "tiny.log")
    done = jobs.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.runs == 1 and done.result.frames == 15


def test_the_webhook_relay_sends_an_event_the_broker_refused(redis_service, tmp_path):
    def broker_down(event_id: str) -> None:
        raise ConnectionError("broker unreachable")

    jobs, storage = JobStore.from_url(redis_service.url), LocalStorage(tmp_path / "storage")
    argv = worker(redis_service, tmp_path / "storage", "--queues", "webhooks", "--concurrency", "2",
                  UNIANIMATE_WEBHOOK_SECRET=WEBHOOK_SECRET, UNIANIMATE_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
                  UNIANIMATE_WEBHOOK_RELAY_AFTER_S="1")
    with webhook_receiver() as receiver, running(argv, tmp_path / "webhooks.log", REPO) as webhooks:
        job = store_job(jobs, storage, webhook=Webhook(url=receiver.url, events=["job.started"]))
        job = jobs.transition(job.id, JobStatus.RUNNING, worker="w")
        event_id = WebhookOutbox(jobs.redis, broker_down, prefix=jobs.prefix).emit(job, "job.started")
        started = time.monotonic()
        wait_until(lambda: receiver.requests, webhooks, 120, "the relayed delivery", tmp_path / "webhooks.log")
        elapsed = time.monotonic() - started
    assert receiver.requests[0].headers["webhook-id"] == event_id
    assert elapsed >= 1.0, "sent by the relay once overdue, not at once"
