"""Promise 2: with the broker's visibility timeout forced far below the render time, Redis hands the
running job's message to a second worker again and again; the lease makes every copy do nothing:
the job is rendered once (every segment one attempt, one run) and each event is published once."""
from __future__ import annotations

from collections import Counter

from tests.chaos.scenario import TERMINAL, outbox_records, submit, wait_for_status
from tests.worker.receiver import webhook_receiver

VISIBILITY_S = 1
SECONDS, FRAMES, SEGMENTS = 4.0, 60, 9  # 15 fps, segments of 8 frames
SKIPPED = "is being rendered by another worker: this copy does nothing"


def test_a_redelivered_copy_of_a_running_job_does_nothing(chaos, figures):
    jobs = chaos.jobs()
    short = {"UNIANIMATE_BROKER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S)}
    with webhook_receiver() as receiver, chaos.render_workers(2, **short) as workers, chaos.client() as client:
        job_id = submit(client, seconds=SECONDS, params={"steps": 3}, webhook_url=receiver.url)
        job = wait_for_status(client, job_id, TERMINAL)
        render_s = (jobs.get(job_id).finished_at - jobs.get(job_id).started_at).total_seconds()
        receiver.wait_for(len(outbox_records(jobs, job_id)), timeout_s=30)
        logs = {w.name: w.text() for w in workers}

    assert job["status"] == "succeeded", job["error"]
    assert job["runs"] == 1 and job["result"]["frames"] == FRAMES
    assert [s["attempts"] for s in job["segments"]] == [1] * SEGMENTS
    assert len({s["worker"] for s in job["segments"]}) == 1, "one worker rendered every segment"
    copies = sum(text.count(SKIPPED) for text in logs.values())
    assert copies >= 1, "the message was handed out again while the job ran"
    assert sum(" run 1 on " in text for text in logs.values()) == 1 and not any(" run 2 " in t for t in logs.values())

    events = Counter(r["event"]["type"] for r in outbox_records(jobs, job_id))
    assert events["job.started"] == events["job.succeeded"] == 1
    assert events["job.segment_completed"] == SEGMENTS
    delivered = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert all(n == 1 for n in delivered.values()) and len(delivered) == sum(events.values())
    figures.record(visibility_timeout_s=VISIBILITY_S, render_s=render_s, copies_delivered_and_skipped=copies,
                   runs=job["runs"], segments_rendered_twice=0, events_published=sum(events.values()))
