"""A redis client that loses chosen commands, as a Redis restart or a network blip would.

Commands are counted as they are sent (a pipeline or a Lua script is one). A command in
`before` never reaches the server; one in `after` runs there but its reply is lost. Either way
the caller gets a ConnectionError, and the client does not retry by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass
class FailurePlan:
    before: set[int] = field(default_factory=set)
    after: set[int] = field(default_factory=set)
    sent: int = 0
    failed: int = 0


class FlakyConnection(redis.Connection):
    def __init__(self, *args, plan: FailurePlan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan
        self._lose_reply = False
        self._handshake = False

    def on_connect_check_health(self, *args, **kwargs):
        self._handshake = True  # the commands a new connection sends itself are not counted
        try:
            return super().on_connect_check_health(*args, **kwargs)
        finally:
            self._handshake = False

    def send_packed_command(self, command, check_health=True) -> None:
        if self._handshake:
            return super().send_packed_command(command, check_health)
        self.plan.sent += 1
        if self.plan.sent in self.plan.before:
            self.plan.failed += 1
            self.disconnect()
            raise redis.ConnectionError(f"injected: command {self.plan.sent} never reached Redis")
        super().send_packed_command(command, check_health)
        self._lose_reply = self.plan.sent in self.plan.after

    def read_response(self, *args, **kwargs):
        response = super().read_response(*args, **kwargs)
        if self._lose_reply and not self._handshake:
            self._lose_reply = False
            self.plan.failed += 1
            self.disconnect()
            raise redis.ConnectionError(f"injected: the reply to command {self.plan.sent} was lost")
        return response


def flaky_client(url: str, plan: FailurePlan) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(url, connection_class=FlakyConnection, plan=plan,
                                         retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
