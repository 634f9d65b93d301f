"""Recording a job's webhook events: the API (a job canceled while queued) and the render worker.

Each event is built once (`service.webhooks.events`: fixed id and body bytes), stored in Redis
with its target URL, and only its id is enqueued on the "webhooks" queue. Every delivery attempt
(service/webhooks/delivery.py) reads that record back, so all attempts send the same `webhook-id` and
byte-identical body, and the record tells an operator what happened to it.

At least once: recording is one Lua step (the terminal claim, the record, the job's event list
and the event's due time in `{prefix}:webhooks:due`), so either all of it happens or none, and a
claimed terminal event always has a record. Enqueueing comes after; if the broker refuses, the
record stays due and the webhook worker's relay (worker/webhook_relay.py) enqueues it again.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from service.jobs.record import Job, Webhook
from service.webhooks.events import ProgressThrottle, build_event, wants_event

log = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"job.succeeded", "job.failed", "job.canceled"})

# KEYS: terminal claim (ignored unless ARGV[4] is "1"), record, the job's event list, due set.
# ARGV: event id, record JSON, TTL seconds, terminal ("1"/"0"), due time (unix seconds).
# Returns 0 when the job's terminal event was already claimed (nothing written), else 1.
_RECORD = """
if ARGV[4] == '1' and not redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  return 0
end
redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('rpush', KEYS[3], ARGV[1])
redis.call('expire', KEYS[3], ARGV[3])
redis.call('zadd', KEYS[4], ARGV[5], ARGV[1])
return 1
"""


def record_key(prefix: str, event_id: str) -> str:
    return f"{prefix}:webhook:{event_id}"


def terminal_claim_key(prefix: str, job_id: str) -> str:
    """Set by whoever sends a job's terminal event, so that at most one is ever sent."""
    return f"{prefix}:job:{job_id}:terminal-webhook"


def job_events_key(prefix: str, job_id: str) -> str:
    """The ids of the events made for a job, in order."""
    return f"{prefix}:job:{job_id}:webhooks"


def due_key(prefix: str) -> str:
    """Sorted set: event id -> when its next delivery attempt is due (unix seconds). An event leaves
    it when delivery is over; one long overdue lost its message and is enqueued again."""
    return f"{prefix}:webhooks:due"


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
        self._record_script = client.register_script(_RECORD)

    def emit(self, job: Job, event_type: str, extra: dict[str, Any] | None = None) -> str | None:
        """Send `event_type` for `job` if it has a webhook that wants it; returns the event id.
        `extra` adds fields to the event's data beside the job's view (job.segment_completed: `live`)."""
        if job.webhook is None or not wants_event(event_type, job.webhook.events):
            return None
        if event_type == "job.progress" and not self.throttle.should_send(job.id):
            return None
        if event_type == "job.segment_completed":
            self.throttle.should_send(job.id, segment_completed=True)  # the next progress event waits again
        event = build_event(event_type, self.job_view(job) | (extra or {}))
        record = {"job_id": job.id, "url": job.webhook.url, "event": event.to_dict(),
                  "attempts": 0, "status": "pending", "detail": ""}
        if not self._record(job.id, event.id, record, terminal=event_type in TERMINAL_EVENTS):
            return None  # the API (cancel of a queued job) or another run already sent it
        try:
            self.enqueue(event.id)
        except Exception as exc:  # noqa: BLE001  (the record is due: the relay enqueues it later)
            log.warning("webhook %s (%s) of job %s recorded but not enqueued (%s); the relay will send it",
                        event.id, event_type, job.id, exc)
        return event.id

    def emit_group(self, group_id: str, webhook: Webhook, event_type: str, data: dict[str, Any]) -> str | None:
        """A group's one event (`group.completed`, data: the group summary): terminal, so it is
        recorded at most once however many finishing members try."""
        if not wants_event(event_type, webhook.events):
            return None
        event = build_event(event_type, data)
        record = {"group_id": group_id, "url": webhook.url, "event": event.to_dict(),
                  "attempts": 0, "status": "pending", "detail": ""}
        if not self._record(f"group-{group_id}", event.id, record, terminal=True):
            return None
        try:
            self.enqueue(event.id)
        except Exception as exc:  # noqa: BLE001  (the record is due: the relay enqueues it later)
            log.warning("webhook %s (%s) of group %s recorded but not enqueued (%s); the relay will send it",
                        event.id, event_type, group_id, exc)
        return event.id

    def _record(self, job_id: str, event_id: str, record: dict[str, Any], *, terminal: bool) -> bool:
        keys = [terminal_claim_key(self.prefix, job_id), record_key(self.prefix, event_id),
                job_events_key(self.prefix, job_id), due_key(self.prefix)]
        args = [event_id, json.dumps(record), self.record_ttl_s, "1" if terminal else "0", time.time()]
        return bool(self._record_script(keys=keys, args=args))

    def forget(self, job_id: str) -> None:
        self.throttle.forget(job_id)
