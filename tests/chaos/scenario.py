"""What the chaos tests do to jobs and read back: submit, wait, look at webhook records."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from service.jobs.store import JobStore
from service.webhooks.outbox import job_events_key, record_key
from tests.integration.stack import wait_for_status
from tests.integration.test_end_to_end import submit

TERMINAL = {"succeeded", "failed", "canceled"}
TERMINAL_EVENTS = {f"job.{status}" for status in TERMINAL}

__all__ = ["TERMINAL", "TERMINAL_EVENTS", "eventually", "outbox_records", "segments_done", "submit",
           "wait_for_status"]


def eventually(check: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.05):
    """Poll `check()` until it returns something truthy (returned); TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError):  # a server that is restarting: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout_s} s")
        time.sleep(poll_s)


def segments_done(job: dict) -> list[int]:
    return [s["index"] for s in job["segments"] if s["done"]]


def outbox_records(jobs: JobStore, job_id: str) -> list[dict]:
    """The webhook events the render workers made for a job, in order, with their delivery state."""
    ids = [i.decode() for i in jobs.redis.lrange(job_events_key(jobs.prefix, job_id), 0, -1)]
    return [json.loads(jobs.redis.get(record_key(jobs.prefix, event_id))) for event_id in ids]
