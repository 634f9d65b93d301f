"""Which Redis errors are an outage (503, retry later) and which are a bug (500).

An outage is anything the client can do nothing about but wait: Redis unreachable or slow, still
loading its data after a restart, out of memory under `noeviction` (the policy deploy/ ships), a
read-only replica or a failover in progress, persistence failing (MISCONF). A `ResponseError` for
a malformed command is our bug and stays a 500.
"""
from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Server error codes that redis-py reports as a plain ResponseError; each means "not now".
_TRANSIENT_CODES = {
    "MISCONF": "cannot persist its data to disk and refuses writes",
    "NOREPLICAS": "has too few replicas in sync to accept writes",
}

_BY_CLASS: tuple[tuple[type[RedisError], str], ...] = (
    # BusyLoadingError and AuthenticationError are ConnectionErrors: they must be looked at first
    (BusyLoadingError, "is loading its data after a restart"),
    (AuthenticationError, "refuses this client (wrong password or user)"),
    (RedisConnectionError, "is unreachable"),
    (RedisTimeoutError, "is unreachable (timed out)"),
    (OutOfMemoryError, "is out of memory (maxmemory reached) and refuses writes"),
    (ReadOnlyError, "is read-only (a replica, or a failover in progress)"),
    (MasterDownError, "lost its link to the primary"),  # a ClusterDownError: looked at first
    (ClusterDownError, "is failing over (cluster down)"),
    (TryAgainError, "is resharding"),
    (NoPermissionError, "refuses this client (ACL permissions)"),
)

# Outages that need an operator rather than patience: logged louder.
OPERATOR_ACTION = (OutOfMemoryError, NoPermissionError, AuthenticationError)


def redis_outage(exc: BaseException) -> str | None:
    """What is wrong with Redis, as "Redis <...>", if `exc` is an outage; None if it is a bug."""
    if not isinstance(exc, RedisError):
        return None
    for cls, words in _BY_CLASS:
        if isinstance(exc, cls):
            return f"Redis {words}"
    if isinstance(exc, ResponseError):
        # inside a pipeline redis-py prefixes the reply: "Command # 1 (SET ...) of pipeline caused error: ..."
        reply = str(exc).rpartition("caused error: ")[2]
        code = reply.split(" ", 1)[0].upper()
        if code in _TRANSIENT_CODES:
            return f"Redis {_TRANSIENT_CODES[code]}"
    return None
