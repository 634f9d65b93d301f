"""Which job or event ids have a message waiting in a queue of the Redis broker.

The sweeper and the webhook relay send a message again only when none is waiting: a long queue
is normal, a lost message is not. Kombu's Redis transport keeps one list per queue and priority
level (service.jobs.queue.broker_lists); each entry is a JSON message whose body is
the task's `[args, kwargs, embed]`, base64-encoded. Our tasks take one argument: the id.

Messages a worker has taken but not acknowledged (running, or waiting for a retry countdown) are
not in these lists; the callers allow for that with their own time limits.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Self

import redis

from service.jobs.queue import broker_lists

CHUNK = 1000  # list entries read per round trip
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class BrokerQueue:
    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client = client
        self.queue = queue

    @classmethod
    def from_url(cls, url: str, queue: str, timeout_s: float = 5.0) -> Self | None:
        """None when the broker is not Redis: then nobody can tell what is waiting."""
        if not url.startswith(REDIS_SCHEMES):
            return None
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s), queue)

    def waiting(self, ids: Iterable[str]) -> set[str]:
        """The subset of `ids` that a waiting message of this queue names."""
        wanted = set(ids)
        found: set[str] = set()
        for name in broker_lists(self.queue):
            start = 0
            while wanted - found:
                chunk = self.client.lrange(name, start, start + CHUNK - 1)
                found |= wanted & {first_argument(raw) for raw in chunk}
                if len(chunk) < CHUNK:
                    break
                start += CHUNK
        return found


def first_argument(raw: bytes) -> str | None:
    """The first positional argument of a raw kombu message, or None if it is not one of ours."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None
