"""Promise 3: SIGTERM to a busy render worker (what `docker stop` and Kubernetes send) is a warm
shutdown that does not wait for the job: the render stops at its next denoising step, the job
goes back to the queue and another worker resumes it after its last stored segment. The
hand-back does not count against the attempt limit."""
from __future__ import annotations

import os
import signal
import time

from tests.chaos.scenario import TERMINAL, eventually, segments_done, submit, wait_for_status

SECONDS, FRAMES, SEGMENTS = 4.0, 60, 9


def test_sigterm_hands_the_job_back_and_it_completes_elsewhere(chaos, figures):
    jobs = chaos.jobs()
    with chaos.render_workers(2) as workers, chaos.client() as client:
        job_id = submit(client, seconds=SECONDS)
        eventually(lambda: segments_done(client.get(f"/jobs/{job_id}").json()), 120, "a first finished segment")
        leaving = chaos.holder(job_id, workers)
        os.kill(leaving.proc.pid, signal.SIGTERM)  # the main process only, as an orchestrator does
        sent = time.monotonic()
        eventually(lambda: jobs.get(job_id).handbacks == 1, 60, "the job handed back", poll_s=0.02)
        handed_back_after_s = time.monotonic() - sent
        stored = segments_done(client.get(f"/jobs/{job_id}").json())
        eventually(lambda: jobs.get(job_id).runs == 2, 60, "the job taken up again", poll_s=0.02)
        resumed_after_s = time.monotonic() - sent
        leaving.proc.wait(timeout=60)
        exited_after_s = time.monotonic() - sent
        job = wait_for_status(client, job_id, TERMINAL)
        other = next(w for w in workers if w is not leaving)

    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["frames"] == FRAMES and job["runs"] == 2 and job["handbacks"] == 1
    assert leaving.proc.returncode == 0, "a warm shutdown, not a crash"
    attempts = {s["index"]: s["attempts"] for s in job["segments"]}
    assert sorted(attempts) == list(range(SEGMENTS)) and all(s["done"] for s in job["segments"])
    assert all(attempts[k] == 1 for k in stored)
    rerendered = [k for k, n in attempts.items() if n > 1]
    assert len(rerendered) <= 1 and len(stored) < SEGMENTS - 1, f"handed back before the end: {attempts}"
    assert "handed back after" in leaving.text() and f"resumes at segment {len(stored) + 1}" in other.text()
    figures.record(handed_back_after_s=handed_back_after_s, resumed_elsewhere_after_s=resumed_after_s,
                   worker_exited_after_s=exited_after_s, segments_stored=len(stored),
                   segments_rerendered=len(rerendered), segments_total=SEGMENTS, runs=job["runs"])
