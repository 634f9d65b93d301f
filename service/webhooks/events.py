"""Job webhook events, per Standard Webhooks (https://www.standardwebhooks.com).

`wants_event` (the job's `webhook_events` filter) and `ProgressThrottle` decide whether an event is
sent at all; `build_event` then freezes it ONCE: a fresh `msg_...` id and the exact body bytes.
The caller stores `event.to_dict()` and every attempt sends that same id and byte-identical body,
so receivers can deduplicate on `webhook-id`. Signing is `signing.py`, one attempt `sender.py`.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "job.started",
    "job.progress",
    "job.segment_completed",
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "group.completed",  # POST /animate/batch: every member of the group is final (sent once)
)

DEFAULT_PROGRESS_INTERVAL_S = 10.0


# ---------------------------------------------------------------- which events go out


def validate_event_filter(events: Collection[str] | None) -> frozenset[str] | None:
    """The API-side check of a job's `webhook_events`: None/empty means every event."""
    if not events:
        return None
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown webhook event(s) {unknown}; choose from {list(EVENT_TYPES)}")
    return frozenset(events)


def wants_event(event_type: str, webhook_events: Collection[str] | None) -> bool:
    """Whether a job subscribed to `event_type` (no filter = all events)."""
    return not webhook_events or event_type in webhook_events


class ProgressThrottle:
    """At most one job.progress per `min_interval_s` per job, except on segment completion, which
    always goes out so a receiver sees every segment boundary.

    State lives in the process that renders the job (one job, one GPU worker); call `forget` when
    the job ends so the table does not grow."""

    def __init__(
        self,
        min_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if min_interval_s < 0:
            raise ValueError(f"progress interval must be >= 0 seconds, got {min_interval_s}")
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_sent: dict[str, float] = {}

    def should_send(self, job_id: str, *, segment_completed: bool = False) -> bool:
        now = self._clock()
        last = self._last_sent.get(job_id)
        if segment_completed or last is None or now - last >= self._min_interval_s:
            self._last_sent[job_id] = now
            return True
        return False

    def forget(self, job_id: str) -> None:
        self._last_sent.pop(job_id, None)


# ---------------------------------------------------------------- the frozen event


@dataclass(frozen=True)
class WebhookEvent:
    """One event as it will be sent on every attempt."""

    id: str  # webhook-id, "msg_<32 hex>"
    type: str
    body: bytes  # exact JSON bytes (ASCII), signed and sent as-is

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form for Celery arguments or Redis; `from_dict` restores identical bytes."""
        return {"id": self.id, "type": self.type, "body": self.body.decode("ascii")}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> WebhookEvent:
        return cls(id=data["id"], type=data["type"], body=data["body"].encode("ascii"))


def _iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def build_event(event_type: str, data: Mapping[str, Any], *, now: float | None = None) -> WebhookEvent:
    """Freeze an event: `{"type", "timestamp" (ISO 8601 UTC, event time), "data"}`.

    `data` is the job's public view (what GET /jobs/{id} returns), never secrets."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event_type!r}; choose from {list(EVENT_TYPES)}")
    timestamp = _iso_utc(time.time() if now is None else now)
    payload = {"type": event_type, "timestamp": timestamp, "data": dict(data)}
    try:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"webhook data for {event_type} is not plain JSON: {exc}") from exc
    return WebhookEvent(id=f"msg_{uuid.uuid4().hex}", type=event_type, body=body.encode("ascii"))
