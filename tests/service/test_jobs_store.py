"""Job records against a real redis-server."""
import itertools
import threading
import uuid

import pytest

from service.jobs.params import RenderParams
from service.jobs.record import TERMINAL, TRANSITIONS, JobError, JobStatus, ModelInfo, Result
from service.jobs.store import IllegalTransition, JobNotFound, JobStore

RESULT = Result(frames=64, fps=8, width=512, height=768, duration_s=8.0, size_bytes=1234, sha256="ab" * 32,
                key="jobs/x/result.mp4")


@pytest.fixture
def store(redis_url):
    return JobStore.from_url(redis_url)


def new_job(store, owner="alice"):
    job_id = uuid.uuid4().hex
    return store.create(job_id, owner, RenderParams(seed=1), {"reference_image": f"jobs/{job_id}/inputs/r.png"})


def move(store, job_id, to):
    kwargs = {JobStatus.RUNNING: {"worker": "w1"}, JobStatus.SUCCEEDED: {"result": RESULT},
              JobStatus.FAILED: {"error": JobError(code="internal", message="boom")}}.get(to, {})
    return store.transition(job_id, to, **kwargs)


def put_in(store, status):
    """A fresh job brought to `status` by legal moves."""
    job = new_job(store)
    if status is not JobStatus.QUEUED:
        if status is not JobStatus.CANCELED:
            move(store, job.id, JobStatus.RUNNING)
        if status is not JobStatus.RUNNING:
            move(store, job.id, status)
    return job.id


@pytest.mark.parametrize("source, target", list(itertools.product(JobStatus, JobStatus)))
def test_only_the_transitions_in_the_table_are_allowed(store, source, target):
    job_id = put_in(store, source)
    if target in TRANSITIONS[source]:
        assert move(store, job_id, target).status is target
    else:
        with pytest.raises(IllegalTransition, match=f"from {source} to {target}"):
            move(store, job_id, target)
        assert store.get(job_id).status is source


def test_terminal_states_are_final():
    assert all(not TRANSITIONS[s] for s in TERMINAL)


def test_lifecycle_sets_timestamps_runs_and_result(store):
    job = new_job(store)
    assert job.status is JobStatus.QUEUED and job.started_at is None
    running = store.transition(job.id, JobStatus.RUNNING, worker="gpu-0",
                               model=ModelInfo(name="tiny", untrained=True))
    assert running.started_at is not None and running.runs == 1 and running.worker == "gpu-0"
    assert running.model.untrained
    resumed = store.transition(job.id, JobStatus.RUNNING, worker="gpu-1")
    assert resumed.runs == 2 and resumed.started_at == running.started_at and resumed.model.name == "tiny"
    done = store.transition(job.id, JobStatus.SUCCEEDED, result=RESULT)
    assert done.finished_at >= done.started_at >= done.created_at
    assert done.result == RESULT and done.progress.fraction == 1.0
    assert store.metric_counters()["gpu_seconds_total"] > 0


def test_transition_requires_what_the_target_state_needs(store):
    job = new_job(store)
    with pytest.raises(ValueError, match="worker"):
        store.transition(job.id, JobStatus.RUNNING)
    store.transition(job.id, JobStatus.RUNNING, worker="w")
    with pytest.raises(ValueError, match="result"):
        store.transition(job.id, JobStatus.SUCCEEDED)
    with pytest.raises(ValueError, match="error"):
        store.transition(job.id, JobStatus.FAILED)


def test_unknown_job(store):
    with pytest.raises(JobNotFound):
        store.get(uuid.uuid4().hex)
    with pytest.raises(JobNotFound):
        store.transition(uuid.uuid4().hex, JobStatus.RUNNING, worker="w")


def test_progress_fraction_and_eta(store):
    job = new_job(store)
    with pytest.raises(IllegalTransition, match="not running"):
        store.update_progress(job.id, segment=0, segments_total=2, step=1, steps_total=30, frames_done=0,
                              frames_total=64)
    store.transition(job.id, JobStatus.RUNNING, worker="w")
    first = store.update_progress(job.id, segment=0, segments_total=4, step=0, steps_total=30,
                                  frames_done=0, frames_total=128)
    assert first.fraction == 0.0 and first.eta_s is None
    later = store.update_progress(job.id, segment=1, segments_total=4, step=15, steps_total=30,
                                  frames_done=32, frames_total=128)
    assert later.fraction == pytest.approx(1.5 / 4)
    assert later.eta_s is not None and later.eta_s >= 0
    assert store.get(job.id).progress == later


def test_segments_count_attempts_and_feed_the_histogram(store):
    job = new_job(store)
    store.transition(job.id, JobStatus.RUNNING, worker="a")
    store.segment_started(job.id, 0, "a")
    entry = store.segment_started(job.id, 0, "b")  # retried on another worker
    assert (entry.attempts, entry.worker, entry.done) == (2, "b", False)
    done = store.segment_finished(job.id, 0, seconds=20.0)
    assert done.done and done.seconds == 20.0
    with pytest.raises(IllegalTransition, match="never started"):
        store.segment_finished(job.id, 5, seconds=1.0)
    counters = store.metric_counters()
    assert counters["segment_seconds_count"] == 1 and counters["segment_seconds_sum"] == 20.0
    assert "segment_seconds_bucket:15.0" not in counters and counters["segment_seconds_bucket:30.0"] == 1


def test_cancel_queued_job_is_immediate(store):
    job = new_job(store)
    assert store.request_cancel(job.id).status is JobStatus.CANCELED
    with pytest.raises(IllegalTransition):
        store.transition(job.id, JobStatus.RUNNING, worker="w")  # a worker that picks it up later


def test_cancel_running_job_sets_the_flag_the_worker_polls(store):
    job = new_job(store)
    store.transition(job.id, JobStatus.RUNNING, worker="w")
    assert not store.cancel_requested(job.id)
    assert store.request_cancel(job.id).status is JobStatus.RUNNING
    assert store.cancel_requested(job.id)
    assert store.transition(job.id, JobStatus.CANCELED).status is JobStatus.CANCELED


def test_cancel_finished_job_changes_nothing(store):
    job_id = put_in(store, JobStatus.SUCCEEDED)
    job = store.request_cancel(job_id)
    assert job.status is JobStatus.SUCCEEDED and not job.cancel_requested


def test_events_are_appended_in_order_and_resumable(store):
    job = new_job(store)
    store.transition(job.id, JobStatus.RUNNING, worker="w")
    store.update_progress(job.id, segment=0, segments_total=1, step=3, steps_total=30, frames_done=0,
                          frames_total=32)
    store.transition(job.id, JobStatus.FAILED, error=JobError(code="out_of_memory", message="CUDA OOM"))
    events = store.events(job.id)
    assert [e.event for e in events] == ["status", "status", "progress", "status"]
    assert [e.data.get("status") for e in events if e.event == "status"] == ["queued", "running", "failed"]
    assert events[-1].data["error"] == {"code": "out_of_memory", "message": "CUDA OOM"}
    assert [e.id for e in store.events(job.id, after=events[1].id)] == [e.id for e in events[2:]]


def test_counts_by_status_follow_transitions(store):
    a, b = new_job(store), new_job(store)
    store.transition(a.id, JobStatus.RUNNING, worker="w")
    counts = store.counts_by_status()
    assert counts[JobStatus.QUEUED] == 1 and counts[JobStatus.RUNNING] == 1
    store.discard(b.id)
    assert store.counts_by_status()[JobStatus.QUEUED] == 0
    with pytest.raises(JobNotFound):
        store.get(b.id)
    with pytest.raises(IllegalTransition):
        store.discard(a.id)


def test_records_do_not_expire(store):
    job = new_job(store)
    assert store.redis.ttl(f"unianimate:job:{job.id}") == -1


def test_concurrent_writers_lose_no_update(store):
    job = new_job(store)
    store.transition(job.id, JobStatus.RUNNING, worker="w")

    def worker(index):
        store.segment_started(job.id, index, f"w{index}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    store.request_cancel(job.id)
    for t in threads:
        t.join()
    final = store.get(job.id)
    assert [s.index for s in final.segments] == list(range(8)) and final.cancel_requested
