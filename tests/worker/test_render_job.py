"""The render job against a real Redis and local storage, with a stub renderer."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import redis

from model.longvideo.mp4 import probe_video
from model.longvideo.seeds import segment_seed
from service.jobs.record import JobStatus, Webhook
from service.jobs.store import JobStore
from service.storage.objects import job_prefix
from service.webhooks.outbox import record_key
from tests.worker.fakes import StubRenderer, skeleton_video_with_sound, store_job
from tests.worker.flaky_redis import FailurePlan, flaky_client
from worker.lease import JobLease
from worker.render_job import NotStarted, Outcome, RetryRender, render_job
from worker.segment_store import SegmentCheckpoints


def test_renders_the_job_to_an_mp4_with_every_frame(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=1.0, fps=15)
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED

    done = jobs.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.runs == 1
    assert (done.result.frames, done.result.fps, done.result.width, done.result.height) == (15, 15.0, 64, 64)
    assert done.result.duration_s == pytest.approx(1.0)
    video = storage.local_path(done.result.key)
    assert done.result.sha256 == hashlib.sha256(video.read_bytes()).hexdigest()
    assert done.result.size_bytes == video.stat().st_size
    assert probe_video(video).frames == 15 and probe_video(video).metadata["untrained"] == "true"
    # 15 frames in segments of at most 8 sharing one frame: two segments, each rendered once
    assert [(s.index, s.attempts, s.done) for s in done.segments] == [(0, 1, True), (1, 1, True)]
    assert done.model.untrained and done.progress.fraction == 1.0
    events = [e.event for e in jobs.events(job.id)]
    assert events[:2] == ["status", "status"] and events[-1] == "status"
    assert events.count("segment") == 2 and "progress" in events
    # kept with the job's other objects: POST /jobs/{id}/rerender copies them
    assert SegmentCheckpoints(storage, job.id).stored_count() == 2, "a succeeded job keeps its checkpoints"


def test_a_crashed_run_resumes_after_the_last_stored_segment(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)  # 30 frames: 5 segments of 8 (7 new frames each)
    with pytest.raises(RetryRender):
        render_job(job.id, make_context(StubRenderer(crash_on_call=2), keep_segments=True))
    interrupted = jobs.get(job.id)
    assert interrupted.status is JobStatus.RUNNING
    assert SegmentCheckpoints(storage, job.id).stored_count() == 2

    second = StubRenderer()
    assert render_job(job.id, make_context(second, keep_segments=True)) is Outcome.SUCCEEDED
    assert second.segment_seeds == [segment_seed(7, k) for k in range(2, 5)], "segments 0 and 1 are not redone"
    done = jobs.get(job.id)
    assert done.runs == 2 and done.result.frames == 30
    assert [(s.index, s.attempts) for s in done.segments] == [(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)]

    # The frames (stored losslessly) equal those of a run that never stopped. The MP4s are not
    # compared: libx264 output differs from run to run by a few levels even for equal input.
    fresh = store_job(jobs, storage, seconds=2.0, fps=15)
    assert render_job(fresh.id, make_context(keep_segments=True)) is Outcome.SUCCEEDED
    resumed = np.concatenate(list(SegmentCheckpoints(storage, job.id).frames(5)))
    uninterrupted = np.concatenate(list(SegmentCheckpoints(storage, fresh.id).frames(5)))
    assert resumed.shape == (30, 64, 64, 3) and np.array_equal(resumed, uninterrupted)


def test_a_copy_that_finds_the_lease_held_does_nothing(jobs, storage, make_context):
    job = store_job(jobs, storage)
    jobs.transition(job.id, JobStatus.RUNNING, worker="other")
    other = JobLease(jobs.redis, jobs.prefix, job.id, ttl_s=30)
    assert other.acquire()
    renderer = StubRenderer()
    assert render_job(job.id, make_context(renderer)) is Outcome.SKIPPED
    assert jobs.get(job.id).runs == 1 and renderer.steps_run == 0
    other.release()


def test_a_queued_job_whose_lease_is_held_is_tried_again_later(jobs, storage, make_context):
    """The holder may have died between taking the lease and starting the job: acknowledging this
    copy would leave the job queued with no message."""
    job = store_job(jobs, storage)
    assert JobLease(jobs.redis, jobs.prefix, job.id, ttl_s=30).acquire()
    renderer = StubRenderer()
    with pytest.raises(NotStarted, match="lease is held"):
        render_job(job.id, make_context(renderer))
    assert jobs.get(job.id).status is JobStatus.QUEUED and renderer.steps_run == 0


@pytest.mark.parametrize("failing", [1, 2, 3, 4])
def test_a_redis_error_before_the_job_runs_leaves_it_queued(jobs, storage, redis_url, make_context, failing):
    """Reading the job, taking the lease, clearing the requeue mark, reading it again: any of them
    failing raises NotStarted (the task retries the message) and changes nothing."""
    job = store_job(jobs, storage)
    plan = FailurePlan(before={failing})
    flaky = dataclasses.replace(make_context(), jobs=JobStore(flaky_client(redis_url, plan), jobs.prefix))
    with pytest.raises(NotStarted):
        render_job(job.id, flaky)
    assert plan.failed == 1 and jobs.get(job.id).status is JobStatus.QUEUED
    assert not jobs.redis.exists(f"{jobs.prefix}:lease:{job.id}"), "a lease it took is released"
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED


def test_a_redis_blip_after_the_job_finished_still_records_its_terminal_event(jobs, storage, make_context,
                                                                             sent_webhooks, monkeypatch):
    job = store_job(jobs, storage, webhook=Webhook(url="https://example.com/hook", events=["job.succeeded"]))
    ctx = make_context()
    emit, failures = ctx.outbox.emit, []

    def flaky_emit(job, event_type, **kwargs):
        if event_type == "job.succeeded" and not failures:
            failures.append(event_type)
            raise redis.ConnectionError("Redis restarting")
        return emit(job, event_type, **kwargs)

    monkeypatch.setattr(ctx.outbox, "emit", flaky_emit)
    assert render_job(job.id, ctx) is Outcome.SUCCEEDED
    assert failures == ["job.succeeded"] and len(sent_webhooks) == 1
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, sent_webhooks[0])))
    assert record["event"]["type"] == "job.succeeded"


def test_a_redis_error_recording_job_started_costs_the_event_not_a_run(jobs, storage, make_context, monkeypatch):
    job = store_job(jobs, storage, webhook=Webhook(url="https://example.com/hook", events=["job.started"]))
    ctx = make_context(max_attempts=1)  # had it cost a run, this job would fail
    emit = ctx.outbox.emit

    def flaky_emit(job, event_type, **kwargs):
        if event_type == "job.started":
            raise redis.ConnectionError("Redis restarting")
        return emit(job, event_type, **kwargs)

    monkeypatch.setattr(ctx.outbox, "emit", flaky_emit)
    assert render_job(job.id, ctx) is Outcome.SUCCEEDED
    assert jobs.get(job.id).runs == 1


def test_a_driving_video_lends_its_sound_to_the_result(jobs, storage, make_context, tmp_path):
    video = skeleton_video_with_sound(tmp_path / "dance.mp4", seconds=1.0, fps=30, sound_seconds=3.0)
    job = store_job(jobs, storage, pose_video=video)  # 30 frames at 30 fps, every 2nd kept: 15 fps
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    info = probe_video(storage.local_path(jobs.get(job.id).result.key))
    assert (info.frames, info.duration_s) == (15, pytest.approx(1.0))
    assert info.audio_duration_s == pytest.approx(1.0, abs=0.025), "the sound, cut at the video's end"


def test_the_sound_is_left_out_when_the_output_rate_changes_the_speed(jobs, storage, make_context, tmp_path):
    video = skeleton_video_with_sound(tmp_path / "dance.mp4", seconds=1.0, fps=30)
    job = store_job(jobs, storage, pose_video=video, params={"fps": 12.0})  # every 2nd frame at 12 fps: 0.8x
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    info = probe_video(storage.local_path(jobs.get(job.id).result.key))
    assert info.frames == 15 and info.audio_duration_s is None


def test_finished_and_unknown_jobs_are_skipped(jobs, storage, make_context):
    job = store_job(jobs, storage)
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    renderer = StubRenderer()
    assert render_job(job.id, make_context(renderer)) is Outcome.SKIPPED
    assert render_job("0" * 32, make_context(renderer)) is Outcome.SKIPPED
    assert renderer.steps_run == 0 and jobs.get(job.id).runs == 1


def test_cancel_between_denoising_steps(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0)
    renderer = StubRenderer(on_step=lambda done: done == 3 and jobs.request_cancel(job.id))
    assert render_job(job.id, make_context(renderer)) is Outcome.CANCELED
    canceled = jobs.get(job.id)
    assert canceled.status is JobStatus.CANCELED and canceled.result is None
    assert renderer.steps_run == 3, "no denoising step runs after the cancel request"
    assert not storage.list(job_prefix(job.id) + "segments/") and not storage.exists(job_prefix(job.id) + "result.mp4")


def test_keypoints_without_a_frame_rate_fail_with_a_clear_message(jobs, storage, make_context):
    job = store_job(jobs, storage, keypoints=json.dumps([{"people": [{"pose_keypoints_2d": [0.5, 0.5, 0.9] * 18}]}] * 4)
                    .encode())
    assert render_job(job.id, make_context()) is Outcome.FAILED
    error = jobs.get(job.id).error
    assert error.code == "invalid_input" and "fps" in error.message


def test_without_reference_keypoints_or_extractor_the_job_fails(jobs, storage, make_context):
    job = store_job(jobs, storage, reference_keypoints=False)
    assert render_job(job.id, make_context()) is Outcome.FAILED
    error = jobs.get(job.id).error
    assert error.code == "invalid_input" and "reference_keypoints" in error.message


def test_a_job_that_keeps_failing_ends_failed_after_max_attempts(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0)
    with pytest.raises(RetryRender):
        render_job(job.id, make_context(StubRenderer(crash_on_call=0), max_attempts=2))
    assert render_job(job.id, make_context(StubRenderer(crash_on_call=0), max_attempts=2)) is Outcome.FAILED
    failed = jobs.get(job.id)
    assert failed.runs == 2 and failed.error.code == "internal" and "Crash" in failed.error.message


def test_a_job_whose_worker_died_too_often_is_failed_without_rendering(jobs, storage, make_context):
    job = store_job(jobs, storage)
    for _ in range(2):  # two runs whose worker vanished without a word
        jobs.transition(job.id, JobStatus.RUNNING, worker="lost")
    renderer = StubRenderer()
    assert render_job(job.id, make_context(renderer, max_attempts=2)) is Outcome.FAILED
    assert jobs.get(job.id).error.code == "too_many_attempts" and renderer.steps_run == 0


def test_webhook_events_follow_the_job_and_its_filter(jobs, storage, make_context, sent_webhooks):
    hook = Webhook(url="https://example.com/hook", events=["job.started", "job.segment_completed", "job.succeeded"])
    job = store_job(jobs, storage, seconds=1.0, webhook=hook)
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    records = [json.loads(jobs.redis.get(record_key(jobs.prefix, event_id))) for event_id in sent_webhooks]
    assert [r["event"]["type"] for r in records] == ["job.started", "job.segment_completed",
                                                     "job.segment_completed", "job.succeeded"]
    last = json.loads(records[-1]["event"]["body"])
    assert last["data"]["status"] == "succeeded" and last["data"]["result"]["frames"] == 15
    assert "owner" not in last["data"] and all(r["url"] == hook.url for r in records)


def test_window_mode_renders_without_checkpoints(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=1.0, params={"long_video_mode": "window"})
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    assert jobs.get(job.id).result.frames == 15


def test_a_segment_stored_but_not_recorded_is_recorded_on_resume(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)
    with pytest.raises(RetryRender):
        render_job(job.id, make_context(StubRenderer(crash_on_call=2), keep_segments=True))
    # the first run died after storing segment 1 and before recording it
    record = jobs.get(job.id)
    unrecorded = [s.model_copy(update={"done": False}) if s.index == 1 else s for s in record.segments]
    jobs.redis.set(f"{jobs.prefix}:job:{job.id}", record.model_copy(update={"segments": unrecorded})
                   .model_dump_json())
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    done = jobs.get(job.id)
    assert all(s.done for s in done.segments) and done.segments[1].attempts == 1
