"""The fair dispatcher (worker/dispatcher.py) against a real redis-server."""
import pytest

from service.jobs.fair_queue import FairQueue
from tests.service.test_fair_queue import submit
from worker.dispatcher import dispatch


@pytest.fixture
def fair(jobs):
    return FairQueue(jobs.redis, jobs.prefix)


def test_dispatch_keeps_the_render_queue_short_and_loses_nothing_if_it_dies(jobs, fair):
    ids = [submit(jobs, fair, "key-a") for _ in range(4)]
    broker: list[str] = []
    sent = dispatch(fair, broker.append, lambda: len(broker), ahead=2, default_max_running=0, grace_s=30)
    assert sent == broker == ids[:2], "no more than `ahead` messages wait in the render queue"

    def broker_down(job_id: str) -> None:
        raise ConnectionError("broker unreachable")

    broker.clear()
    with pytest.raises(ConnectionError):
        dispatch(fair, broker_down, lambda: 0, ahead=2, default_max_running=0, grace_s=30)
    # the job taken off the list is in `released`, not lost: a later round (any worker) sends it
    assert fair.waiting_ids() == set(ids[2:])
    assert dispatch(fair, broker.append, lambda: 99, ahead=2, default_max_running=0, grace_s=0) == [ids[2]]
    assert fair.waiting_ids() == {ids[3]}
