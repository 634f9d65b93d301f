"""A worker process killed in the middle of a job: the job resumes after its last stored segment."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.stack import wait_for_status
from tests.integration.test_end_to_end import submit

pytestmark = pytest.mark.integration


def wait_for_segment(client, job_id: str, index: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").raise_for_status().json()
        if any(s["index"] == index and s["done"] for s in job["segments"]):
            return job
        time.sleep(0.05)
    raise TimeoutError(f"segment {index} of job {job_id} not done after {timeout_s} s")


def test_a_killed_render_process_resumes_after_the_stored_segments(stack):
    with stack.client() as client:
        job_id = submit(client, seconds=4.0, params={"steps": 4})  # 60 frames: 9 segments of 8
        wait_for_segment(client, job_id, 0)
        for pid in stack.render_children():  # the process that renders; Celery starts a new one
            os.kill(pid, signal.SIGKILL)
        killed_at = client.get(f"/jobs/{job_id}").json()
        job = wait_for_status(client, job_id, {"succeeded", "failed", "canceled"})

    assert job["status"] == "succeeded", job["error"]
    assert job["runs"] == 2 and job["result"]["frames"] == 60
    attempts = {s["index"]: s["attempts"] for s in job["segments"]}
    finished_before = [s["index"] for s in killed_at["segments"] if s["done"]]
    assert all(attempts[k] == 1 for k in finished_before), "stored segments are not rendered again"
    interrupted = len(finished_before)
    assert attempts[interrupted] == 2, "the segment cut short is rendered again by the second run"
    assert sorted(attempts) == list(range(9)) and all(s["done"] for s in job["segments"])
