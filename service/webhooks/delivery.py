"""Delivering recorded webhook events (the webhooks queue's task); recording them is
service/webhooks/outbox.py. Every attempt reads the stored record, so retries send the same
`webhook-id` and byte-identical body.

The attempt number comes from the record, not from the Celery message: a message re-sent by the
relay, or retried after a Redis error, continues the count instead of starting it again.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis

from service.webhooks.events import WebhookEvent
from service.webhooks.outbox import due_key, record_key
from service.webhooks.sender import DeliveryStatus, deliver, next_retry_delay

log = logging.getLogger(__name__)

FINISHED = frozenset({"delivered", "failed"})
IN_FLIGHT_S = 120.0  # an attempt holds its event this long: more than the delivery task's time limit
EARLY_SLACK_S = 2.0  # a retry message may run this much before its due time (clock differences)

# KEYS: the due set. ARGV: event id, now, early slack, in-flight seconds. An attempt may start only
# when the event is due; it then moves the due time past its own end, so a second copy of the message
# (relayed, or redelivered while this one was reserved) finds it not due and does nothing.
_CLAIM_ATTEMPT = """
local due = redis.call('zscore', KEYS[1], ARGV[1])
if due and tonumber(due) > tonumber(ARGV[2]) + tonumber(ARGV[3]) then return 0 end
redis.call('zadd', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[4]), ARGV[1])
return 1
"""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    base_s: float = 5.0
    cap_s: float = 1800.0


def deliver_recorded(client: redis.Redis, event_id: str, *, secret: str, http: httpx.Client, policy: RetryPolicy,
                     prefix: str = "unianimate", clock: Callable[[], float] = time.time) -> float | None:
    """The next delivery attempt of a recorded event; returns seconds until the attempt after it,
    or None when this message has nothing (more) to do: delivery is over (delivered, given up, out of
    attempts), or another copy holds the event (its attempt is in flight or its retry not yet due)."""
    key = record_key(prefix, event_id)
    raw = client.get(key)
    if raw is None:
        log.error("webhook event %s has no record (expired?): dropped", event_id)
        client.zrem(due_key(prefix), event_id)
        return None
    record = json.loads(raw)
    if record["status"] in FINISHED:  # a second copy of the message (relayed, or redelivered)
        log.info("webhook %s is already %s: this copy does nothing", event_id, record["status"])
        client.zrem(due_key(prefix), event_id)
        return None
    if not client.register_script(_CLAIM_ATTEMPT)(keys=[due_key(prefix)],
                                                  args=[event_id, clock(), EARLY_SLACK_S, IN_FLIGHT_S]):
        log.info("webhook %s is not due, or another copy is delivering it: this copy does nothing", event_id)
        return None
    attempt = int(record["attempts"]) + 1
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
    with client.pipeline() as pipe:  # MULTI: the record and its due time change together
        pipe.set(key, json.dumps(record), keepttl=True)
        if delay is None:
            pipe.zrem(due_key(prefix), event_id)
        else:
            pipe.zadd(due_key(prefix), {event_id: clock() + delay})
        pipe.execute()
    log.info("webhook %s (%s) attempt %d: %s -> %s", event_id, record["event"]["type"], attempt, outcome.detail,
             status)
    return delay
