"""Promise 1: a render worker killed outright (SIGKILL to the main process and its children) after a
segment finished loses at most the segment it was rendering. Another worker takes the job up once
the lease expires, resumes after the last stored segment, and the job succeeds with every frame
and exactly one terminal webhook event."""
from __future__ import annotations

import time

import pytest

from tests.chaos.scenario import (
    TERMINAL,
    TERMINAL_EVENTS,
    eventually,
    outbox_records,
    segments_done,
    submit,
    wait_for_status,
)
from tests.integration.stack import LEASE_TTL_S
from tests.worker.receiver import webhook_receiver

SECONDS, FPS, FRAMES, SEGMENTS = 2.0, 15, 30, 5  # 30 frames in segments of 8 (first-frame chaining)


@pytest.mark.parametrize("kill_after", [1, pytest.param(2, marks=pytest.mark.chaos_slow),
                                        pytest.param(3, marks=pytest.mark.chaos_slow)])
def test_a_killed_worker_job_resumes_on_another_worker(chaos, figures, kill_after):
    jobs = chaos.jobs()
    with webhook_receiver() as receiver, chaos.render_workers(2) as workers, chaos.client() as client:
        job_id = submit(client, seconds=SECONDS, fps=FPS, webhook_url=receiver.url)
        at_kill = eventually(lambda: (j := client.get(f"/jobs/{job_id}").json()) and
                             len(segments_done(j)) >= kill_after and j, 120, f"{kill_after} finished segment(s)")
        victim = chaos.holder(job_id, workers)
        victim.kill()
        killed = time.monotonic()
        stored = segments_done(client.get(f"/jobs/{job_id}").json())  # nothing more can finish now
        eventually(lambda: jobs.get(job_id).runs == 2, 60, "the job taken up again", poll_s=0.02)
        resumed_after_s = time.monotonic() - killed
        job = wait_for_status(client, job_id, TERMINAL)
        survivor = next(w for w in workers if w is not victim)
        receiver.wait_for(len(outbox_records(jobs, job_id)), timeout_s=30)

    assert job["status"] == "succeeded", job["error"]
    assert job["runs"] == 2 and job["result"]["frames"] == FRAMES
    attempts = {s["index"]: s["attempts"] for s in job["segments"]}
    assert sorted(attempts) == list(range(SEGMENTS)) and all(s["done"] for s in job["segments"])
    assert all(attempts[k] == 1 for k in stored), "stored segments are not rendered again"
    rerendered = [k for k, n in attempts.items() if n > 1]
    assert rerendered == [len(stored)], f"only the segment cut short is rendered again, got {attempts}"
    assert {s["worker"] for s in job["segments"] if s["index"] > len(stored)} == {
        jobs.get(job_id).worker}, "the rest was rendered by the surviving worker"
    assert f"resumes at segment {len(stored) + 1}" in survivor.text()
    assert "is running but its worker is gone: enqueued again" in survivor.text(), (
        "the survivor's orphan sweeper sent it once the lease expired (not the broker, hours later)")

    records = outbox_records(jobs, job_id)
    terminal = [r["event"]["id"] for r in records if r["event"]["type"] in TERMINAL_EVENTS]
    assert len(terminal) == 1
    delivered_terminal = {r.headers["webhook-id"] for r in receiver.requests
                          if b'"type":"job.succeeded"' in r.body.replace(b" ", b"")}
    assert delivered_terminal == set(terminal)
    assert at_kill["status"] == "running"
    figures.record(lease_ttl_s=LEASE_TTL_S, time_to_resume_s=resumed_after_s, segments_stored_at_kill=len(stored),
                   segments_rerendered=len(rerendered), segments_total=SEGMENTS, frames=job["result"]["frames"],
                   terminal_event_ids=len(terminal), webhook_deliveries=len(receiver.requests))
