"""Delivering recorded webhook events (the webhooks queue's task); recording them is
service/webhook_outbox.py. Every attempt reads the stored record, so retries send the same
`webhook-id` and byte-identical body."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import httpx
import redis

from service.webhook_outbox import record_key
from service.webhooks import DeliveryStatus, WebhookEvent, deliver, next_retry_delay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    base_s: float = 5.0
    cap_s: float = 1800.0


def deliver_recorded(client: redis.Redis, event_id: str, attempt: int, *, secret: str, http: httpx.Client,
                     policy: RetryPolicy, prefix: str = "unianimate") -> float | None:
    """Attempt number `attempt` (1-based) of a recorded event; returns seconds until the next
    attempt, or None when delivery is over (delivered, given up, or out of attempts)."""
    key = record_key(prefix, event_id)
    raw = client.get(key)
    if raw is None:
        log.error("webhook event %s has no record (expired?): dropped", event_id)
        return None
    record = json.loads(raw)
    outcome = deliver(WebhookEvent.from_dict(record["event"]), record["url"], secret, http)
    delay = next_retry_delay(outcome, attempt, max_attempts=policy.max_attempts, base_s=policy.base_s,
                             cap_s=policy.cap_s)
    if outcome.status is DeliveryStatus.DELIVERED:
        status = "delivered"
    elif delay is not None:
        status = "retrying"
    else:
        status = "failed"
    record |= {"attempts": attempt, "status": status, "detail": outcome.detail}
    client.set(key, json.dumps(record), keepttl=True)
    log.info("webhook %s (%s) attempt %d: %s -> %s", event_id, record["event"]["type"], attempt, outcome.detail,
             status)
    return delay
