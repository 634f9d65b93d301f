"""The request path's Redis work in one round trip each (asyncio, no thread hop).

GET /jobs/{id} is what clients call most. One Lua script takes the key's rate-limit token, reads
the job's record and, when the job waits in a fair list, counts the jobs that start before it
(service.jobs.fair_queue's order, plus the messages already in the render queue). Every other
authenticated request takes its token with `take_token`, also one round trip.

A Redis that refuses writes (out of memory, a read-only replica, persistence failing) cannot take
tokens; the rate limit then fails open and a status read falls back to a plain GET, so clients can
still read their jobs during the outage (writes answer 503 as before).
"""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from service.jobs.fair_queue import POSITION_LUA
from service.jobs.key_limits import TAKE_LUA, TOKEN_LUA, KeyLimits, raise_if_throttled

# KEYS: bucket, limit overrides, job record, fair turns; ARGV: rate, burst, prefix, owner, job id,
# then the render queue's broker lists (only when the broker is this Redis)
READ_JOB_LUA = TOKEN_LUA + POSITION_LUA + """
local wait = take_token(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if tonumber(wait) > 0 then return {wait, false, false} end
local raw = redis.call('GET', KEYS[3])
local ahead = false
if raw then ahead = fair_position(ARGV[3], KEYS[4], ARGV[4], ARGV[5]) end
if ahead then
  for i = 6, #ARGV do ahead = ahead + redis.call('LLEN', ARGV[i]) end
end
return {wait, raw, ahead}
"""


# KEYS: fair turns; ARGV: prefix, owner, job id, then the render queue's broker lists (as above)
POSITION_READ_LUA = POSITION_LUA + """
local ahead = fair_position(ARGV[1], KEYS[1], ARGV[2], ARGV[3])
if ahead then
  for i = 4, #ARGV do ahead = ahead + redis.call('LLEN', ARGV[i]) end
end
return ahead
"""


@dataclass(frozen=True)
class JobRead:
    raw: bytes | None  # the record's JSON; None: no such job
    jobs_ahead: int | None  # jobs that start before it; None: not waiting in a fair list


class FastReads:
    def __init__(self, client: aioredis.Redis, defaults: KeyLimits, prefix: str = "unianimate",
                 broker_lists: tuple[str, ...] = ()) -> None:
        self.client = client
        self.defaults = defaults
        self.prefix = prefix
        self.broker_lists = broker_lists
        self._take = client.register_script(TAKE_LUA)
        self._read = client.register_script(READ_JOB_LUA)
        self._position = client.register_script(POSITION_READ_LUA)

    def _limit_keys(self, owner: str) -> list[str]:
        return [f"{self.prefix}:bucket:{owner}", f"{self.prefix}:limits:{owner}"]

    async def take_token(self, owner: str) -> None:
        """LimitExceeded("rate_per_s") when the key's bucket is empty."""
        try:
            wait = await self._take(keys=self._limit_keys(owner), args=[self.defaults.rate_per_s, self.defaults.burst])
        except ResponseError as exc:
            if not refuses_writes(exc):
                raise
            return  # fail open: see the module's docstring
        raise_if_throttled(wait)

    async def read_job(self, owner: str, job_id: str) -> JobRead:
        """Take a token (LimitExceeded when empty), then read the job and its place in the queue."""
        record = f"{self.prefix}:job:{job_id}"
        try:
            wait, raw, ahead = await self._read(
                keys=[*self._limit_keys(owner), record, f"{self.prefix}:fair:turns"],
                args=[self.defaults.rate_per_s, self.defaults.burst, self.prefix, owner, job_id, *self.broker_lists])
        except ResponseError as exc:
            if not refuses_writes(exc):
                raise
            return JobRead(await self.client.get(record), None)  # fail open: see the module's docstring
        raise_if_throttled(wait)
        return JobRead(raw, None if ahead is None else int(ahead))

    async def queue_position(self, owner: str, job_id: str) -> int | None:
        """What `read_job` counts as `jobs_ahead`, without a token: the SSE stream of a queued job
        asks it once per poll (None: the job is not waiting in a fair list)."""
        try:
            ahead = await self._position(keys=[f"{self.prefix}:fair:turns"],
                                         args=[self.prefix, owner, job_id, *self.broker_lists])
        except ResponseError as exc:
            if not refuses_writes(exc):
                raise
            return None  # no position for now; the stream goes on (see the module's docstring)
        return None if ahead is None else int(ahead)

    async def close(self) -> None:
        await self.client.aclose()


def refuses_writes(exc: ResponseError) -> bool:
    """Redis is up but refuses writes for now (service.api.outages names the same conditions)."""
    code = str(exc).rpartition("caused error: ")[2].split(" ", 1)[0].upper()
    return isinstance(exc, (OutOfMemoryError, ReadOnlyError)) or code in ("OOM", "READONLY", "MISCONF", "NOREPLICAS")
