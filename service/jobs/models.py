"""Which models the render workers hold, for GET /models (the web page's "untrained" label).

Every render process that has loaded its model announces the model's name once a minute; an
announcement is forgotten `ttl_s` after it was last repeated, so the list follows the workers that
are up, and the key itself expires when none is. One sorted set: member = the model, score = the
time it was last announced.
"""
from __future__ import annotations

import json
import time

import redis

DEFAULT_TTL_S = 180  # three missed announcements


class ModelsSeen:
    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = client
        self.key = f"{prefix}:models"
        self.ttl_s = ttl_s

    def announce(self, name: str, untrained: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        member = json.dumps({"name": name, "untrained": untrained}, sort_keys=True)
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: the set never lives without its expiry
            pipe.zadd(self.key, {member: now})
            pipe.zremrangebyscore(self.key, "-inf", now - self.ttl_s)
            pipe.expire(self.key, self.ttl_s)
            pipe.execute()

    def current(self, now: float | None = None) -> list[dict]:
        """The models announced within `ttl_s`, most recently seen first."""
        now = time.time() if now is None else now
        seen = self.redis.zrevrangebyscore(self.key, "+inf", now - self.ttl_s, withscores=True)
        return [json.loads(member) | {"last_seen": round(score, 3)} for member, score in seen]
