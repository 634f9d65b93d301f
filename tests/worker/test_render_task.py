"""The `unianimate.render` task: a job that could not start is retried, never acknowledged into
limbo; a retry holds the sweepers off for about its countdown, not for the visibility timeout."""
from __future__ import annotations

import dataclasses

import pytest
from celery.exceptions import Reject, Retry

from model.checkpoints import CheckpointError
from service.jobs.record import JobStatus
from service.jobs.store import JobStore
from tests.worker.fakes import StubRenderer, store_job
from tests.worker.flaky_redis import FailurePlan, flaky_client
from worker import celery_app
from worker.render_job import NotStarted, RetryRender
from worker.render_retry import RENDER_RETRY_DELAY_S, requeue_claim_ttl, retry_countdown
from worker.sweeper import sweep

LEASE_TTL_S = 5  # make_context's


@pytest.fixture
def retries(monkeypatch) -> list[tuple[Exception, float]]:
    """Calls of the task's `retry`: (exception, countdown). Celery would publish the retry message."""
    calls: list[tuple[Exception, float]] = []

    def retry(exc=None, countdown=None, **_):
        calls.append((exc, countdown))
        raise Retry(exc=exc, when=countdown)

    monkeypatch.setattr(celery_app.render, "retry", retry)
    return calls


@pytest.fixture
def install(monkeypatch, storage):
    """Make the task use `ctx` (or a runtime whose model fails to load when ctx is None)."""
    def use(ctx=None, *, settings=None, factory=None) -> celery_app.Runtime:
        settings = settings or ctx.settings
        runtime = celery_app.Runtime(settings, ctx.jobs if ctx else None, storage,
                                     factory or celery_app.renderer_factory)
        runtime._context = ctx
        monkeypatch.setattr(celery_app, "_runtime", runtime)
        monkeypatch.setattr(celery_app, "_settings", settings)
        return runtime
    return use


def claim_ttl(jobs: JobStore, job_id: str) -> int:
    return jobs.redis.ttl(f"{jobs.prefix}:requeued:{job_id}")


def test_a_failed_run_holds_the_sweepers_off_for_its_countdown_and_a_lease(jobs, storage, make_context, install,
                                                                         retries):
    job = store_job(jobs, storage, seconds=2.0)
    ctx = make_context(StubRenderer(crash_on_call=1))
    install(ctx)
    with pytest.raises(Retry):
        celery_app.render(job.id)
    [(exc, countdown)] = retries
    assert type(exc).__name__ == "RetryRender" and countdown == RENDER_RETRY_DELAY_S
    ttl = claim_ttl(jobs, job.id)
    assert 0 < ttl <= countdown + LEASE_TTL_S, f"{ttl} s; the visibility timeout is {ctx.settings.visibility_timeout_s}"
    assert sweep(jobs, lambda job_id: None, claim_ttl_s=60) == [], "the retry is due: no sweeper sends it"
    jobs.redis.delete(f"{jobs.prefix}:requeued:{job.id}")  # as if the TTL ran out: the worker with the retry died
    assert sweep(jobs, lambda job_id: None, claim_ttl_s=60) == [job.id]


def test_a_redis_error_before_the_job_runs_retries_the_message(jobs, storage, redis_url, make_context, install,
                                                               retries):
    job = store_job(jobs, storage)
    plan = FailurePlan(before={1})  # the first read of the job
    ctx = make_context()
    install(dataclasses.replace(ctx, jobs=JobStore(flaky_client(redis_url, plan), jobs.prefix)))
    with pytest.raises(Retry):
        celery_app.render(job.id)
    [(exc, countdown)] = retries
    assert type(exc).__name__ == "NotStarted" and countdown == RENDER_RETRY_DELAY_S
    assert plan.failed == 1 and jobs.get(job.id).status is JobStatus.QUEUED and jobs.get(job.id).runs == 0
    assert celery_app.render(job.id) == "succeeded", "the retried message renders it"


def test_a_worker_whose_model_did_not_load_retries_the_job(jobs, storage, make_context, install, retries):
    def broken(settings, index):
        raise CheckpointError("unianimate_16f_32f_non_ema_223000.pth is damaged")

    job = store_job(jobs, storage)
    settings = make_context().settings
    runtime = install(settings=settings, factory=broken)
    runtime.jobs = jobs
    with pytest.raises(Retry):
        celery_app.render(job.id)
    [(exc, _)] = retries
    assert "CheckpointError" in str(exc) and jobs.get(job.id).status is JobStatus.QUEUED


def test_a_retry_that_cannot_be_published_puts_the_message_back(jobs, storage, make_context, install, monkeypatch):
    def unpublishable(exc=None, countdown=None, **_):
        raise Reject(exc, requeue=False)  # what Task.retry raises when the broker refuses the retry

    monkeypatch.setattr(celery_app.render, "retry", unpublishable)
    job = store_job(jobs, storage)
    ctx = make_context()
    ctx.jobs.redis.set(f"{jobs.prefix}:lease:{job.id}", "someone")  # a lease left by a run that never started
    install(ctx)
    with pytest.raises(Reject) as rejected:
        celery_app.render(job.id)
    assert rejected.value.requeue, "requeue, not drop: nothing else would send this queued job again"


def test_retry_countdowns():
    assert retry_countdown(RetryRender("x"), 7, 60) == 5
    assert [retry_countdown(NotStarted("x"), n, 60) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert retry_countdown(NotStarted("x"), 3, 2) == 5
    assert requeue_claim_ttl(5, 60) == 65


def test_a_job_that_keeps_failing_to_start_the_same_way_is_failed_not_retried_forever(
        jobs, storage, make_context, install, retries, monkeypatch):
    """A bug (here: in clearing the requeue claim) is not cured by waiting: after START_RETRIES
    message retries the job fails with a message, and the message is acknowledged."""
    def bug(*_):
        raise KeyError("a bug")

    monkeypatch.setattr("worker.render_job.clear_requeue_claim", bug)
    job = store_job(jobs, storage)
    install(make_context())
    early = celery_app.render.apply(args=[job.id], retries=celery_app.START_RETRIES - 1)
    assert isinstance(early.result, Retry) and jobs.get(job.id).status is JobStatus.QUEUED
    assert celery_app.render.apply(args=[job.id], retries=celery_app.START_RETRIES).get() == "failed"
    failed = jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.code == "internal_error"
    assert "KeyError" in failed.error.message


def test_transient_failures_to_start_are_retried_however_often(jobs, storage, redis_url, make_context, install,
                                                               retries):
    job = store_job(jobs, storage)
    ctx = make_context()
    install(dataclasses.replace(ctx, jobs=JobStore(flaky_client(redis_url, FailurePlan(before={1})), jobs.prefix)))
    result = celery_app.render.apply(args=[job.id], retries=100)
    assert isinstance(result.result, Retry) and jobs.get(job.id).status is JobStatus.QUEUED


def test_a_record_that_cannot_be_read_is_dropped_after_its_retries(jobs, storage, make_context, install, retries):
    job = store_job(jobs, storage)
    jobs.redis.set(f"{jobs.prefix}:job:{job.id}", b"{not json")
    install(make_context())
    assert isinstance(celery_app.render.apply(args=[job.id]).result, Retry)
    assert celery_app.render.apply(args=[job.id], retries=celery_app.START_RETRIES).get() == "skipped"


def test_a_loaded_model_is_announced_for_get_models(jobs, storage, make_context, monkeypatch):
    from service.jobs.models import ModelsSeen

    monkeypatch.setattr(celery_app, "MODEL_ANNOUNCE_EVERY_S", 3600)  # the repeat is not this test's business
    monkeypatch.setattr(celery_app, "load_extractor", lambda settings: None)
    stub = StubRenderer()
    stub.label, stub.untrained = "tiny-untrained", True
    runtime = celery_app.Runtime(make_context().settings, jobs, storage, lambda settings, index: stub)
    runtime.load_model()
    assert [(m["name"], m["untrained"]) for m in ModelsSeen(jobs.redis, jobs.prefix).current()] == [
        ("tiny-untrained", True)]
