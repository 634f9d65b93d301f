"""The job state machine under random interleavings of what the API and workers do, on a real Redis:
terminal states are final, the status events tell one consistent story, and a job gets at most one
terminal webhook (the outbox claims a job's terminal event once, whoever sends it)."""
from __future__ import annotations

import itertools
import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from service.jobs.params import RenderParams
from service.jobs.record import JobError, JobStatus, Result, Webhook
from service.jobs.store import IllegalTransition, JobStore
from service.storage.objects import LocalStorage
from service.webhooks.outbox import WebhookOutbox, job_events_key, record_key
from tests.fuzz.budget import examples
from tests.worker.fakes import StubRenderer
from worker.render_job import WorkerContext, _finish
from worker.settings import WorkerSettings

# The promise, written out independently of service.jobs.record.TRANSITIONS (which it checks):
# running -> running is a resumed run; nothing leaves a terminal state.
Q, R, S, F, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED
LEGAL = {Q: {R, F, C}, R: {R, S, F, C}, S: set(), F: set(), C: set()}
TERMINAL_EVENTS = {"job.succeeded", "job.failed", "job.canceled"}
FINISH = {JobStatus.SUCCEEDED: {"result": Result(frames=1, fps=8, width=64, height=64, duration_s=0.125,
                                                 size_bytes=1, sha256="0" * 64, key="k")},
          JobStatus.FAILED: {"error": JobError(code="internal", message="boom")},
          JobStatus.CANCELED: {}}


@pytest.fixture
def context(redis_url, tmp_path) -> WorkerContext:
    jobs = JobStore.from_url(redis_url)
    settings_ = WorkerSettings(_env_file=None, redis_url=redis_url, model="tiny", storage="local",
                               local_storage_dir=tmp_path / "storage")
    outbox = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix, progress_interval_s=0)
    return WorkerContext(settings_, jobs, LocalStorage(tmp_path / "storage"), StubRenderer(), outbox, name="w")


def new_job(jobs: JobStore) -> str:
    job_id = uuid.uuid4().hex
    jobs.create(job_id, "owner", RenderParams(seed=1), {}, Webhook(url="https://example.com/hook"))
    return job_id


def webhook_types(jobs: JobStore, job_id: str) -> list[str]:
    ids = [raw.decode() for raw in jobs.redis.lrange(job_events_key(jobs.prefix, job_id), 0, -1)]
    return [json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))["event"]["type"] for event_id in ids]


def status_story(jobs: JobStore, job_id: str) -> list[str]:
    return [event.data["status"] for event in jobs.events(job_id, count=10_000) if event.event == "status"]


class JobLife(RuleBasedStateMachine):
    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__()
        self.ctx, self.jobs = ctx, ctx.jobs
        self.job_id = new_job(self.jobs)
        self.final: JobStatus | None = None  # the terminal state, once reached
        self.finished_by_worker = False

    def _status(self) -> JobStatus:
        return self.jobs.get(self.job_id).status

    @rule()
    def api_cancel(self) -> None:
        before = self._status()
        after = self.jobs.request_cancel(self.job_id).status
        if before.terminal:
            assert after is before
        elif before is JobStatus.QUEUED:
            assert after is JobStatus.CANCELED
            self.final = after

    @rule()
    def worker_starts(self) -> None:
        before = self._status()
        try:
            self.jobs.transition(self.job_id, JobStatus.RUNNING, worker="w")
        except IllegalTransition:
            assert before.terminal
        else:
            assert JobStatus.RUNNING in LEGAL[before]

    @rule(status=st.sampled_from(list(FINISH)))
    def worker_finishes(self, status: JobStatus) -> None:
        before = self._status()
        try:
            _finish(self.ctx, self.job_id, status, **FINISH[status])
        except IllegalTransition:
            assert status not in LEGAL[before]
        else:
            assert status in LEGAL[before]
            self.final, self.finished_by_worker = status, True

    @rule()
    def worker_reports_progress(self) -> None:
        before = self._status()
        try:
            self.jobs.update_progress(self.job_id, segment=0, segments_total=2, step=1, steps_total=2,
                                      frames_done=0, frames_total=16)
        except IllegalTransition:
            assert before is not JobStatus.RUNNING

    @invariant()
    def terminal_states_are_final(self) -> None:
        status = self._status()
        if self.final is not None:
            assert status is self.final
        assert [s for s in JobStatus if self.job_id in self.jobs.ids_with_status(s)] == [status]

    @invariant()
    def at_most_one_terminal_webhook(self) -> None:
        terminal = [t for t in webhook_types(self.jobs, self.job_id) if t in TERMINAL_EVENTS]
        assert len(terminal) == (1 if self.finished_by_worker else 0), terminal
        if terminal:
            assert terminal == [f"job.{self.final.value}"]

    @invariant()
    def the_status_events_tell_one_story(self) -> None:
        story = [JobStatus(s) for s in status_story(self.jobs, self.job_id)]
        assert story[0] is JobStatus.QUEUED
        assert all(b in LEGAL[a] for a, b in itertools.pairwise(story))
        assert sum(s.terminal for s in story) <= 1 and story[-1] is self._status()


ACTIONS = [("api_cancel", {}), ("worker_starts", {}), ("worker_reports_progress", {}),
           *(("worker_finishes", {"status": status}) for status in FINISH)]


def test_every_sequence_of_three_actions(context):
    """All 6^3 orders of three actions, checked after each step (the random test below goes longer)."""
    for sequence in itertools.product(ACTIONS, repeat=3):
        life = JobLife(context)
        for name, kwargs in sequence:
            getattr(life, name)(**kwargs)
            life.terminal_states_are_final()
            life.at_most_one_terminal_webhook()
            life.the_status_events_tell_one_story()


def test_random_interleavings(context):
    run_state_machine_as_test(lambda: JobLife(context), settings=settings(
        max_examples=examples(30), stateful_step_count=12, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))


@pytest.mark.parametrize("round_", range(5))
def test_racing_finishers_make_one_terminal_state_and_one_webhook(context, round_):
    """Workers and the API racing to end one running job: one wins, the rest are refused."""
    jobs = context.jobs
    job_id = new_job(jobs)
    jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    barrier = threading.Barrier(7)
    won, refused = [], []

    def finisher(status: JobStatus) -> None:
        barrier.wait()
        try:
            _finish(context, job_id, status, **FINISH[status])
            won.append(status)
        except IllegalTransition:
            refused.append(status)

    def canceller() -> None:
        barrier.wait()
        jobs.request_cancel(job_id)

    threads = [threading.Thread(target=finisher, args=(s,)) for s in list(FINISH) * 2] + [
        threading.Thread(target=canceller)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1 and len(refused) == 5
    assert jobs.get(job_id).status is won[0]
    assert [t for t in webhook_types(jobs, job_id) if t in TERMINAL_EVENTS] == [f"job.{won[0].value}"]
    assert sum(JobStatus(s).terminal for s in status_story(jobs, job_id)) == 1
