"""Per-key limits: what each API key may do, its own overrides, and how much of it it uses now.

Four limits (0 = none), defaults from the settings (UNIANIMATE_KEY_*), each overridable per key
in the Redis hash `{prefix}:limits:{owner}` (`unianimate keys set`), which every API process and
worker reads, so a change applies at once everywhere:

- `rate_per_s` / `burst`: requests per second, a token bucket in Redis (`{prefix}:bucket:{owner}`),
  shared by all API processes; the clock is Redis' own (TIME), so API hosts need not agree.
- `max_queued`: jobs waiting to start; checked inside the transaction that records the job.
- `max_running`: jobs released to the workers and not finished; the fair dispatcher holds the
  key's next job back meanwhile (service.jobs.fair_queue), so a submission is never refused for it.
- `gpu_seconds_per_day`: render time of the key's jobs this UTC day (service.jobs.owners); once
  reached, submissions are refused until midnight UTC (jobs already queued still run).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from service.jobs.owners import OwnerIndex, utc_day

# Lua: take one token from `bucket` (KEYS[1]) for the key whose overrides are in KEYS[2];
# ARGV: default rate, default burst. Returns "0" or the seconds to wait, as text (Lua numbers
# would be truncated to integers in the reply).
TOKEN_LUA = """
local function take_token(bucket, overrides, default_rate, default_burst)
  local o = redis.call('HMGET', overrides, 'rate_per_s', 'burst')
  local rate = tonumber(o[1]) or tonumber(default_rate)
  local burst = math.max(1, tonumber(o[2]) or tonumber(default_burst))
  if rate <= 0 then return '0' end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local s = redis.call('HMGET', bucket, 'tokens', 'at')
  local tokens = tonumber(s[1]) or burst
  local at = tonumber(s[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', bucket, math.ceil(burst / rate * 1000) + 1000)
  return string.format('%.3f', wait)
end
"""
TAKE_LUA = TOKEN_LUA + "return take_token(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"


@dataclass(frozen=True)
class KeyLimits:
    rate_per_s: float
    burst: int
    max_queued: int
    max_running: int
    gpu_seconds_per_day: float

    @classmethod
    def from_settings(cls, settings: Any) -> KeyLimits:
        return cls(settings.key_rate_per_s, settings.key_burst, settings.key_max_queued,
                   settings.key_max_running, settings.key_gpu_seconds_per_day)

    def merged(self, overrides: dict[str, str]) -> KeyLimits:
        types = {f.name: f.type for f in fields(self)}
        return replace(self, **{name: (float if types[name] == "float" else int)(float(value))
                                for name, value in overrides.items() if name in types})


LIMIT_NAMES = tuple(f.name for f in fields(KeyLimits))


@dataclass(frozen=True)
class KeyUsage:
    queued: int  # waiting to start (in the key's list, or released to a worker not started yet)
    waiting: int  # of those, still in the key's fair list
    running: int
    gpu_seconds_today: float


class LimitExceeded(Exception):
    """A limit refuses the request; `limit` names it, `retry_after_s` says when to try again."""

    def __init__(self, limit: str, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.limit = limit
        self.detail = detail
        self.retry_after_s = retry_after_s


class KeyLimitStore:
    def __init__(self, client: redis.Redis, defaults: KeyLimits, prefix: str = "unianimate") -> None:
        self.redis = client
        self.defaults = defaults
        self.prefix = prefix
        self.owners = OwnerIndex(prefix)
        self._take = client.register_script(TAKE_LUA)

    @classmethod
    def from_url(cls, url: str, defaults: KeyLimits, timeout_s: float = 5.0,
                 prefix: str = "unianimate") -> KeyLimitStore:
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s),
                   defaults, prefix)

    def overrides_key(self, owner: str) -> str:
        return f"{self.prefix}:limits:{owner}"

    def bucket_key(self, owner: str) -> str:
        return f"{self.prefix}:bucket:{owner}"

    # limits ----------------------------------------------------------------------------------
    def overrides(self, owner: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(self.overrides_key(owner)).items()}

    def limits(self, owner: str) -> KeyLimits:
        return self.defaults.merged(self.overrides(owner))

    def set_overrides(self, owner: str, values: dict[str, float]) -> None:
        unknown = set(values) - set(LIMIT_NAMES)
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}; known: {', '.join(LIMIT_NAMES)}")
        if any(v < 0 for v in values.values()):
            raise ValueError("limits are >= 0 (0 means no limit)")
        if values:
            self.redis.hset(self.overrides_key(owner), mapping={k: repr(v) for k, v in values.items()})

    def clear_overrides(self, owner: str, names: tuple[str, ...] = ()) -> None:
        if names:
            self.redis.hdel(self.overrides_key(owner), *names)
        else:
            self.redis.delete(self.overrides_key(owner))

    # usage -------------------------------------------------------------------------------------
    def usage(self, owner: str, client: Any = None) -> KeyUsage:
        with (client or self.redis).pipeline(transaction=False) as pipe:
            pipe.scard(self.owners.key(owner, "queued"))
            pipe.llen(f"{self.prefix}:fair:wait:{owner}")
            pipe.scard(self.owners.key(owner, "running"))
            pipe.hget(self.owners.gpu_key(utc_day()), owner)
            queued, waiting, running, gpu = pipe.execute()
        return KeyUsage(int(queued), int(waiting), int(running), float(gpu or 0.0))

    # checks --------------------------------------------------------------------------------------
    def take_token(self, owner: str) -> None:
        """One request of `owner`; LimitExceeded("rate_per_s") when its bucket is empty."""
        raise_if_throttled(self._take(keys=[self.bucket_key(owner), self.overrides_key(owner)],
                                      args=[self.defaults.rate_per_s, self.defaults.burst]))

    def check_submission(self, pipe: Any, owner: str, adding: int = 1) -> KeyLimits:
        """Refuse `adding` more jobs over the key's queued-jobs or GPU-time limit. Inside
        JobStore.create's transaction (the queued set is watched) it is exact; a caller about to make
        several jobs (a batch) may call it first with the whole count, on the plain client."""
        limits = self.defaults.merged({_text(k): _text(v) for k, v in pipe.hgetall(self.overrides_key(owner)).items()})
        if limits.max_queued > 0:
            queued = int(pipe.scard(self.owners.key(owner, "queued")))
            if queued + adding > limits.max_queued:
                raise LimitExceeded("max_queued", f"this API key has {queued} jobs waiting to start and its limit "
                                    f"is {limits.max_queued}, so {adding} more do not fit; submit more once some "
                                    "have started", retry_after_s=30)
        if limits.gpu_seconds_per_day > 0:
            used = float(pipe.hget(self.owners.gpu_key(utc_day()), owner) or 0.0)
            if used >= limits.gpu_seconds_per_day:
                raise LimitExceeded("gpu_seconds_per_day", f"this API key's jobs rendered for {used:.0f} GPU "
                                    f"seconds today (UTC); its daily limit is {limits.gpu_seconds_per_day:g}",
                                    retry_after_s=seconds_to_midnight())
        return limits


def raise_if_throttled(wait: bytes | str) -> None:
    seconds = float(_text(wait))
    if seconds > 0:
        raise LimitExceeded("rate_per_s", "too many requests for this API key; slow down", retry_after_s=seconds)


def seconds_to_midnight(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
