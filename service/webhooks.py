"""Job webhooks, signed per Standard Webhooks (https://www.standardwebhooks.com).

The pieces, in the order a worker uses them:

1. `wants_event` (the job's `webhook_events` filter) and `ProgressThrottle` decide whether an
   event is sent at all.
2. `build_event` freezes the event ONCE: a fresh `msg_...` id and the exact body bytes. The
   caller stores `event.to_dict()` (e.g. as Celery task arguments) and every attempt sends that
   same id and byte-identical body, so receivers can deduplicate on `webhook-id`.
3. `deliver` makes one attempt. Signing happens per attempt with the attempt's time as
   `webhook-timestamp`: receivers reject timestamps older than a few minutes, and a retry an hour
   later must still verify. The signed content (`id.timestamp.body`) changes only in the timestamp.
4. `next_retry_delay` turns an outcome into "retry in N seconds" or "stop".

Nothing here imports Celery: the worker wraps `deliver` in a task on the "webhooks" queue.
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import enum
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from service.netguard import BlockedURL, UnresolvableURL, pinned_client

EVENT_TYPES: tuple[str, ...] = (
    "job.started",
    "job.progress",
    "job.segment_completed",
    "job.succeeded",
    "job.failed",
    "job.canceled",
)

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_BACKOFF_BASE_S = 5.0
DEFAULT_BACKOFF_CAP_S = 1800.0
DEFAULT_PROGRESS_INTERVAL_S = 10.0
DELIVERY_TIMEOUT_S = 10.0
USER_AGENT = "unianimate-webhooks/1"
# 4xx answers that mean "not now" rather than "never".
_RETRYABLE_4XX = frozenset({408, 425, 429})


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


# ---------------------------------------------------------------- signing


def generate_secret(n_bytes: int = 32) -> str:
    """A new `whsec_<base64>` secret for UNIANIMATE_WEBHOOK_SECRET."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(n_bytes)).decode("ascii")


def validate_secret(secret: str) -> None:
    """Raise ValueError unless `secret` is `whsec_` + base64 of 24..64 bytes (the spec's range)."""
    hint = (
        "generate one with: "
        "python -c 'from service.webhooks import generate_secret; print(generate_secret())'"
    )
    if not secret.startswith("whsec_"):
        raise ValueError(f"webhook secret must start with 'whsec_'; {hint}")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"webhook secret after 'whsec_' is not valid base64 ({exc}); {hint}") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"webhook secret must hold 24 to 64 bytes, it holds {len(key)}; {hint}")


def sign_headers(event: WebhookEvent, secret: str, *, now: float | None = None) -> dict[str, str]:
    """The request headers for one attempt, signed for the attempt's time."""
    validate_secret(secret)
    attempt_time = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    signature = Webhook(secret).sign(event.id, attempt_time, event.body.decode("ascii"))
    return {
        "webhook-id": event.id,
        "webhook-timestamp": str(int(attempt_time.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


# ---------------------------------------------------------------- delivery


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class DeliveryOutcome:
    status: DeliveryStatus
    detail: str  # short, loggable: "HTTP 503", "timeout: ...", "blocked: ..."
    status_code: int | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, when it sent one


def webhook_client(allow_hosts: frozenset[str] = frozenset()) -> httpx.Client:
    """The client `deliver` expects: guarded and pinned, no redirects (a 301/302 would turn the POST
    into a GET without the body), a short timeout so a slow receiver cannot stall the queue."""
    return pinned_client(allow_hosts, timeout=DELIVERY_TIMEOUT_S, follow_redirects=False)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _classify(response: httpx.Response) -> DeliveryOutcome:
    code = response.status_code
    detail = f"HTTP {code}"
    if 200 <= code < 300:
        return DeliveryOutcome(DeliveryStatus.DELIVERED, detail, code)
    if code >= 500 or code in _RETRYABLE_4XX:
        return DeliveryOutcome(
            DeliveryStatus.RETRY, detail, code, _retry_after_s(response.headers.get("retry-after"))
        )
    if 300 <= code < 400:
        detail += f" redirect to {response.headers.get('location', '?')}; configure the final URL"
    # 410 Gone says the endpoint is retired; other 4xx reject these exact bytes, which a retry resends.
    return DeliveryOutcome(DeliveryStatus.GIVE_UP, detail, code)


def deliver(event: WebhookEvent, url: str, secret: str, client: httpx.Client) -> DeliveryOutcome:
    """One delivery attempt of `event` to `url`. Never raises for network or receiver trouble;
    use `webhook_client()` for `client` so the URL guard applies."""
    headers = sign_headers(event, secret)
    try:
        with client.stream("POST", url, content=event.body, headers=headers) as response:
            return _classify(response)  # the receiver's body is never read
    except UnresolvableURL as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"dns: {exc}")
    except (BlockedURL, httpx.InvalidURL) as exc:
        return DeliveryOutcome(DeliveryStatus.GIVE_UP, f"blocked: {exc}")
    except httpx.TimeoutException as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"timeout: {exc!r}")
    except httpx.TransportError as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"connection: {exc!r}")


# ---------------------------------------------------------------- retries


def backoff_delay(
    attempt: int,
    *,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): "full jitter", uniform in
    [0, min(cap, base * 2**(attempt-1))), so many failed deliveries do not retry in lockstep."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    return rng() * ceiling


def next_retry_delay(
    outcome: DeliveryOutcome,
    attempt: int,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """After attempt `attempt` ended in `outcome`: seconds until the next attempt, or None to stop
    (delivered, given up, or `max_attempts` used). A receiver's Retry-After is honoured up to the cap."""
    if outcome.status is not DeliveryStatus.RETRY or attempt >= max_attempts:
        return None
    delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s, rng=rng)
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, cap_s))
    return delay
