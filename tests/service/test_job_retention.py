"""Finished jobs expire: record, event stream and state index, after UNIANIMATE_JOB_RETENTION_S."""
import time
import uuid

import pytest
from pydantic import ValidationError

from service.jobs.params import RenderParams
from service.jobs.record import JobError, JobStatus, Result
from service.jobs.store import DEFAULT_RETENTION_S, JobNotFound, JobStore
from service.settings import ApiSettings
from tests.service.conftest import keypoint_upload

RESULT = Result(frames=8, fps=8, width=64, height=64, duration_s=1.0, size_bytes=10, sha256="0" * 64, key="k")
FINISH = {JobStatus.SUCCEEDED: {"result": RESULT},
          JobStatus.FAILED: {"error": JobError(code="internal", message="boom")},
          JobStatus.CANCELED: {}}


def started(store: JobStore) -> str:
    job_id = uuid.uuid4().hex
    store.create(job_id, "owner", RenderParams(seed=1), {})
    store.transition(job_id, JobStatus.RUNNING, worker="w")
    store.update_progress(job_id, segment=0, segments_total=1, step=1, steps_total=2, frames_done=0,
                          frames_total=8)
    return job_id


def wait_gone(store: JobStore, job_id: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while store.redis.exists(f"{store.prefix}:job:{job_id}") and time.monotonic() < deadline:
        time.sleep(0.1)


def test_live_jobs_never_expire(redis_url):
    store = JobStore.from_url(redis_url, retention_s=1)
    job_id = started(store)
    assert store.redis.ttl(f"unianimate:job:{job_id}") == -1
    assert store.redis.ttl(store.stream_key(job_id)) == -1
    assert store.get(job_id).expires_at is None


@pytest.mark.parametrize("status", list(FINISH))
def test_a_finished_job_expires_after_the_retention(redis_url, status):
    store = JobStore.from_url(redis_url, retention_s=3600)
    job_id = started(store)
    job = store.transition(job_id, status, **FINISH[status])
    assert 3590 <= store.redis.ttl(f"unianimate:job:{job_id}") <= 3601
    assert 3590 <= store.redis.ttl(store.stream_key(job_id)) <= 3601
    assert abs((job.expires_at - job.finished_at).total_seconds() - 3600) < 1
    assert store.get(job_id).expires_at == job.expires_at


def test_record_stream_and_index_are_gone_together(redis_url):
    store = JobStore.from_url(redis_url, retention_s=1)
    job_id = started(store)
    store.transition(job_id, JobStatus.SUCCEEDED, result=RESULT)
    assert store.counts_by_status()[JobStatus.SUCCEEDED] == 1
    assert store.ids_with_status(JobStatus.SUCCEEDED) == [job_id]
    wait_gone(store, job_id)
    with pytest.raises(JobNotFound):
        store.get(job_id)
    assert store.events(job_id) == []
    assert store.counts_by_status()[JobStatus.SUCCEEDED] == 0
    assert store.ids_with_status(JobStatus.SUCCEEDED) == []
    # the next job to finish prunes the expired member, so the index does not grow forever
    store.transition(started(store), JobStatus.FAILED, **FINISH[JobStatus.FAILED])
    assert store.redis.zscore(store.index.key(JobStatus.SUCCEEDED), job_id) is None


def test_the_retention_of_the_submitting_api_applies_whoever_finishes(redis_url):
    """The worker's store does not know the API's setting: the record carries it."""
    api = JobStore.from_url(redis_url, retention_s=2 * 86400)
    worker = JobStore.from_url(redis_url)
    assert worker.retention_s == DEFAULT_RETENTION_S != api.retention_s
    job_id = started(api)
    worker.transition(job_id, JobStatus.SUCCEEDED, result=RESULT)
    assert 2 * 86400 - 10 <= worker.redis.ttl(f"unianimate:job:{job_id}") <= 2 * 86400 + 1


def test_cancel_through_the_api_shows_when_the_job_expires(make_client):
    client = make_client(job_retention_s=86400)
    job_id = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    assert client.get(f"/jobs/{job_id}").json()["expires_at"] is None
    body = client.post(f"/jobs/{job_id}/cancel").json()
    assert body["status"] == "canceled" and body["expires_at"] is not None
    assert "retention_s" not in body
    jobs = client.app.state.services.jobs
    assert 86390 <= jobs.redis.ttl(f"unianimate:job:{job_id}") <= 86401


def test_retention_setting_is_read_and_bounded(monkeypatch):
    monkeypatch.setenv("UNIANIMATE_JOB_RETENTION_S", str(3 * 86400))
    assert ApiSettings(_env_file=None).job_retention_s == 3 * 86400
    with pytest.raises(ValidationError, match="at least idempotency_ttl_s"):
        ApiSettings(_env_file=None, job_retention_s=2 * 86400, idempotency_ttl_s=3 * 86400)
    with pytest.raises(ValidationError):  # shorter than Celery's default result expiry (1 day)
        ApiSettings(_env_file=None, job_retention_s=3600, idempotency_ttl_s=60)
