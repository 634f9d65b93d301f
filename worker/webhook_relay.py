"""The webhook relay: sends events whose delivery message was lost to the webhooks queue again.

Every recorded event has a due time in `{prefix}:webhooks:due` (service/webhooks/outbox.py): when it
was recorded, then when its next retry is due; it leaves the set when delivery is over. An event
still there `overdue_s` after its due time has lost its message: the broker refused it, Celery
could not publish a retry, or the webhook worker holding the retry's countdown died (Redis would
hand that message back only after the visibility timeout, hours later). Each webhook worker runs
the relay every `overdue_s / 4`; it takes the overdue events (pushing their due time on, so one
relay takes each), and enqueues each one that no waiting message names. Delivery reads the
stored record, so the event goes out with the same `webhook-id` and bytes.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from service.webhooks.outbox import due_key
from worker.broker_queue import BrokerQueue
from worker.periodic import Periodic

log = logging.getLogger(__name__)

BATCH = 500  # events taken per round

# KEYS: the due set. ARGV: now, overdue seconds, batch. Takes the overdue ids and makes them due now,
# so the next relay round (of any worker) considers them again only after another `overdue_s`.
_TAKE_OVERDUE = """
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1] - ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('zadd', KEYS[1], ARGV[1], id) end
return ids
"""


def relay_overdue(client: redis.Redis, enqueue: Callable[[str], None], *, overdue_s: float,
                  queue: BrokerQueue | None, prefix: str = "unianimate",
                  clock: Callable[[], float] = time.time) -> list[str]:
    """Enqueue again the events overdue by `overdue_s` with no waiting message; returns their ids."""
    taken = [raw.decode() for raw in client.register_script(_TAKE_OVERDUE)(
        keys=[due_key(prefix)], args=[clock(), overdue_s, BATCH])]
    if not taken:
        return []
    waiting = queue.waiting(taken) if queue is not None else set()
    sent = [event_id for event_id in taken if event_id not in waiting]
    for event_id in sent:
        log.warning("webhook %s is %g s overdue and no message for it is waiting: enqueued again", event_id,
                    overdue_s)
        enqueue(event_id)
    return sent


class WebhookRelay(Periodic):
    def __init__(self, client: redis.Redis, enqueue: Callable[[str], None], *, overdue_s: float,
                 queue: BrokerQueue | None, prefix: str = "unianimate") -> None:
        super().__init__("webhook-relay", max(0.2, overdue_s / 4), self.run_once)
        self.client = client
        self.enqueue = enqueue
        self.overdue_s = overdue_s
        self.queue = queue
        self.prefix = prefix

    def run_once(self) -> list[str]:
        return relay_overdue(self.client, self.enqueue, overdue_s=self.overdue_s, queue=self.queue,
                             prefix=self.prefix)
