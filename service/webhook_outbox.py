"""Recording a job's webhook events: the API (a job canceled while queued) and the render worker.

Each event is built once (`service.webhooks.build_event`: fixed id and body bytes), stored in Redis
with its target URL, and only its id is enqueued on the "webhooks" queue. Every delivery attempt
(worker/outbox.py) reads that record back, so all attempts send the same `webhook-id` and
byte-identical body, and the record tells an operator what happened to it.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from service.job_model import Job
from service.webhooks import ProgressThrottle, build_event, wants_event

TERMINAL_EVENTS = frozenset({"job.succeeded", "job.failed", "job.canceled"})


def record_key(prefix: str, event_id: str) -> str:
    return f"{prefix}:webhook:{event_id}"


def terminal_claim_key(prefix: str, job_id: str) -> str:
    """Set by whoever sends a job's terminal event, so that at most one is ever sent."""
    return f"{prefix}:job:{job_id}:terminal-webhook"


def job_events_key(prefix: str, job_id: str) -> str:
    """The ids of the events made for a job, in order."""
    return f"{prefix}:job:{job_id}:webhooks"


class WebhookOutbox:
    """Builds, records and enqueues a job's webhook events."""

    def __init__(self, client: redis.Redis, enqueue: Callable[[str], None], *, prefix: str = "unianimate",
                 progress_interval_s: float = 10.0, record_ttl_s: int = 7 * 24 * 3600,
                 job_view: Callable[[Job], dict[str, Any]] = lambda job: job.public()) -> None:
        self.redis = client
        self.enqueue = enqueue
        self.prefix = prefix
        self.throttle = ProgressThrottle(progress_interval_s)
        self.record_ttl_s = record_ttl_s
        self.job_view = job_view

    def emit(self, job: Job, event_type: str) -> str | None:
        """Send `event_type` for `job` if it has a webhook that wants it; returns the event id."""
        if job.webhook is None or not wants_event(event_type, job.webhook.events):
            return None
        if event_type == "job.progress" and not self.throttle.should_send(job.id):
            return None
        if event_type == "job.segment_completed":
            self.throttle.should_send(job.id, segment_completed=True)  # the next progress event waits again
        if event_type in TERMINAL_EVENTS and not self._claim_terminal(job.id):
            return None  # the API (cancel of a queued job) or another run already sent it
        event = build_event(event_type, self.job_view(job))
        record = {"job_id": job.id, "url": job.webhook.url, "event": event.to_dict(),
                  "attempts": 0, "status": "pending", "detail": ""}
        with self.redis.pipeline() as pipe:
            pipe.set(record_key(self.prefix, event.id), json.dumps(record), ex=self.record_ttl_s)
            pipe.rpush(job_events_key(self.prefix, job.id), event.id)
            pipe.expire(job_events_key(self.prefix, job.id), self.record_ttl_s)
            pipe.execute()
        self.enqueue(event.id)
        return event.id

    def _claim_terminal(self, job_id: str) -> bool:
        return bool(self.redis.set(terminal_claim_key(self.prefix, job_id), "1", nx=True, ex=self.record_ttl_s))

    def forget(self, job_id: str) -> None:
        self.throttle.forget(job_id)
