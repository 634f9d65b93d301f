"""Fair order across API keys: per-key waiting lists, released to the broker one job at a time.

A new job is not published to Celery at submission. It is appended to its key's waiting list
`{prefix}:fair:wait:{owner}` in the same transaction that records it (JobStore.create's `admit`),
and its key joins `{prefix}:fair:turns`, a sorted set of the keys with waiting jobs scored by the
turn at which each was last served. A dispatcher in every render worker (worker/dispatcher.py)
calls `release` while the render queue holds fewer than a few messages: the key served longest
ago (a key new to the queue first) gives up its oldest job, so keys take turns (round-robin by
least recent service) however many jobs each has waiting. A key at its `max_running` limit
(running plus released jobs) is skipped until one of its jobs ends.

Nothing is lost between the list and the broker: `release` (one Lua script) moves the id into
`{prefix}:fair:released` with the time; the dispatcher removes it once the broker took the message,
and any dispatcher sends again the ids left there longer than a grace period (a worker that died
in between). A copy too many is harmless (the lease and the job's status settle it). Ids of jobs
no longer queued (canceled, rolled back) are dropped when they reach the head of a list.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from service.jobs.owners import OwnerIndex

# Lua: count the jobs that start before `id` (waiting in owner's list) in the fair order.
# Keys take turns in the order of `turns`: before job i of a key come that key's i jobs and, of
# every other key, min(n, i) jobs, plus one more from each key ranked before it that has over i.
POSITION_LUA = """
local function fair_position(prefix, turns_key, owner, id)
  local i = redis.call('LPOS', prefix .. ':fair:wait:' .. owner, id)
  if not i then return false end
  local ahead = i
  local my_rank = redis.call('ZRANK', turns_key, owner) or -1
  local keys = redis.call('ZRANGE', turns_key, 0, -1)
  for rank, other in ipairs(keys) do
    if other ~= owner then
      local n = redis.call('LLEN', prefix .. ':fair:wait:' .. other)
      ahead = ahead + math.min(n, i)
      if rank - 1 < my_rank and n > i then ahead = ahead + 1 end
    end
  end
  return ahead
end
"""

# KEYS: turns, served (hash owner -> last turn), turn counter, released
# ARGV: prefix, now, default max_running (0 = no limit)
RELEASE_LUA = """
local prefix, now, default_running = ARGV[1], ARGV[2], tonumber(ARGV[3])
for _, owner in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local list = prefix .. ':fair:wait:' .. owner
  local queued = prefix .. ':owner:' .. owner .. ':queued'
  while true do  -- drop canceled or rolled-back jobs at the head
    local head = redis.call('LINDEX', list, 0)
    if not head or redis.call('SISMEMBER', queued, head) == 1 then break end
    redis.call('LPOP', list)
  end
  local n = redis.call('LLEN', list)
  if n == 0 then
    redis.call('ZREM', KEYS[1], owner)
  else
    local limit = tonumber(redis.call('HGET', prefix .. ':limits:' .. owner, 'max_running')) or default_running
    local active = redis.call('SCARD', queued) - n + redis.call('SCARD', prefix .. ':owner:' .. owner .. ':running')
    if limit <= 0 or active < limit then
      local id = redis.call('LPOP', list)
      local turn = redis.call('INCR', KEYS[3])
      redis.call('HSET', KEYS[2], owner, turn)
      if n == 1 then redis.call('ZREM', KEYS[1], owner) else redis.call('ZADD', KEYS[1], turn, owner) end
      redis.call('ZADD', KEYS[4], now, id)
      return {id, owner}
    end
  end
end
return false
"""

POSITION_ONLY_LUA = POSITION_LUA + "return fair_position(ARGV[1], KEYS[1], ARGV[2], ARGV[3])"


@dataclass(frozen=True)
class Released:
    job_id: str
    owner: str


class FairQueue:
    def __init__(self, client: redis.Redis, prefix: str = "unianimate") -> None:
        self.redis = client
        self.prefix = prefix
        self.owners = OwnerIndex(prefix)
        self._release = client.register_script(RELEASE_LUA)
        self._position = client.register_script(POSITION_ONLY_LUA)

    # keys ------------------------------------------------------------------------------------
    def waiting_key(self, owner: str) -> str:
        return f"{self.prefix}:fair:wait:{owner}"

    @property
    def turns_key(self) -> str:
        return f"{self.prefix}:fair:turns"

    @property
    def served_key(self) -> str:
        return f"{self.prefix}:fair:served"

    @property
    def released_key(self) -> str:
        return f"{self.prefix}:fair:released"

    # submission (inside JobStore.create's transaction) -----------------------------------------
    def last_turn(self, pipe: Any, owner: str) -> float:
        """Read before MULTI: the turn at which `owner` was last served (0: never)."""
        return float(pipe.hget(self.served_key, owner) or 0)

    def add(self, pipe: Any, owner: str, job_id: str, last_turn: float) -> None:
        """Queue the writes that put a new job at the end of its key's list (inside MULTI)."""
        pipe.rpush(self.waiting_key(owner), job_id)
        pipe.zadd(self.turns_key, {owner: last_turn}, nx=True)

    def forget(self, owner: str, job_id: str) -> None:
        """A queued job canceled: out of the list now, so queue positions stop counting it."""
        self.redis.lrem(self.waiting_key(owner), 1, job_id)

    # dispatching (worker/dispatcher.py) ----------------------------------------------------------
    def release(self, default_max_running: int) -> Released | None:
        """Take the next job in fair order off its list (into `released`); None if none may start."""
        got = self._release(keys=[self.turns_key, self.served_key, f"{self.prefix}:fair:turn",
                                  self.released_key], args=[self.prefix, f"{time.time():.6f}", default_max_running])
        return Released(_text(got[0]), _text(got[1])) if got else None

    def sent(self, job_id: str) -> None:
        """The broker has the job's message."""
        self.redis.zrem(self.released_key, job_id)

    def resend_stale(self, enqueue: Callable[[str], None], grace_s: float) -> list[str]:
        """Send again the ids released over `grace_s` ago and never marked sent (a dispatcher died)."""
        stale = [_text(i) for i in self.redis.zrangebyscore(self.released_key, "-inf", time.time() - grace_s)]
        for job_id in stale:
            enqueue(job_id)
            self.sent(job_id)
        return stale

    # reading -------------------------------------------------------------------------------------
    def waiting_ids(self) -> set[str]:
        """Every job id in a waiting list or released but not yet handed to the broker."""
        ids = {_text(i) for i in self.redis.zrange(self.released_key, 0, -1)}
        for owner in self.redis.zrange(self.turns_key, 0, -1):
            ids |= {_text(i) for i in self.redis.lrange(self.waiting_key(_text(owner)), 0, -1)}
        return ids

    def waiting_count(self, owner: str) -> int:
        return int(self.redis.llen(self.waiting_key(owner)))

    def position(self, owner: str, job_id: str) -> int | None:
        """Jobs of the waiting lists that start before this one (None: it is not waiting)."""
        got = self._position(keys=[self.turns_key], args=[self.prefix, owner, job_id])
        return None if got is None else int(got)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
