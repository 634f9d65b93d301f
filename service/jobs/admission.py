"""What JobStore.create does besides recording a job: the key's limits, then its fair waiting list.

Both run inside create's transaction, WATCHing the key's queued set: two submissions racing for
the key's last queued slot cannot both get it, and a job is in its waiting list exactly when it is
recorded (service.jobs.fair_queue's dispatcher takes it from there).
"""
from __future__ import annotations

from typing import Any

from service.jobs.fair_queue import FairQueue
from service.jobs.key_limits import KeyLimitStore
from service.jobs.record import JobStatus
from service.jobs.store import Admit


def admission(limits: KeyLimitStore, fair: FairQueue, owner: str, job_id: str) -> Admit:
    """LimitExceeded from `check` refuses the job; nothing is written then."""
    turn: list[float] = []

    def check(pipe: Any) -> None:
        limits.check_submission(pipe, owner)
        turn[:] = [fair.last_turn(pipe, owner)]

    def write(pipe: Any) -> None:
        fair.add(pipe, owner, job_id, turn[0])

    return Admit(watch=(limits.owners.key(owner, JobStatus.QUEUED),), check=check, write=write)
