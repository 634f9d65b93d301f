"""Sends waiting jobs to the render queue in fair order across API keys (service.jobs.fair_queue).

Each render worker's main process runs one, like the orphan sweeper. Every `interval_s` it first
sends again any job a dispatcher released but never handed to the broker (it died in between),
then releases jobs while the render queue holds fewer than `ahead` messages. Workers take
messages one at a time (prefetch 1, acks late), so a busy cluster keeps at most `ahead` jobs
committed ahead of the fair order: the next free worker gets the key served longest ago. Several
dispatchers may overshoot `ahead` by one each; that costs a little fairness, never a job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from service.jobs.fair_queue import FairQueue
from worker.periodic import Periodic

log = logging.getLogger(__name__)


def dispatch(fair: FairQueue, enqueue: Callable[[str], None], depth: Callable[[], int], *, ahead: int,
             default_max_running: int, grace_s: float) -> list[str]:
    """One round; returns the ids sent to the render queue."""
    sent = fair.resend_stale(enqueue, grace_s)
    for job_id in sent:
        log.warning("job %s was released to the render queue but never sent: sent again", job_id)
    while depth() < ahead:
        released = fair.release(default_max_running)
        if released is None:
            break
        enqueue(released.job_id)  # an error leaves it in `released`: a later round sends it
        fair.sent(released.job_id)
        sent.append(released.job_id)
    return sent


class Dispatcher(Periodic):
    def __init__(self, fair: FairQueue, enqueue: Callable[[str], None], depth: Callable[[], int], *,
                 interval_s: float, ahead: int, default_max_running: int, grace_s: float) -> None:
        super().__init__("fair-dispatcher", interval_s, self.run_once)
        self.fair = fair
        self.enqueue = enqueue
        self.depth = depth
        self.ahead = ahead
        self.default_max_running = default_max_running
        self.grace_s = grace_s

    def run_once(self) -> list[str]:
        return dispatch(self.fair, self.enqueue, self.depth, ahead=self.ahead,
                        default_max_running=self.default_max_running, grace_s=self.grace_s)
