"""Fair order across API keys (service.jobs.fair_queue), per-key limits at creation
(service.jobs.admission), against a real redis-server."""
import threading
import uuid

import pytest

from service.jobs.admission import admission
from service.jobs.fair_queue import FairQueue
from service.jobs.key_limits import KeyLimits, KeyLimitStore, LimitExceeded
from service.jobs.owners import utc_day
from service.jobs.params import RenderParams
from service.jobs.record import JobStatus
from service.jobs.store import JobStore

NO_LIMITS = KeyLimits(rate_per_s=0, burst=1, max_queued=0, max_running=0, gpu_seconds_per_day=0)


@pytest.fixture
def store(redis_url):
    return JobStore.from_url(redis_url)


@pytest.fixture
def fair(store):
    return FairQueue(store.redis, store.prefix)


def submit(store, fair, owner, limits=NO_LIMITS) -> str:
    job_id = uuid.uuid4().hex
    store.create(job_id, owner, RenderParams(seed=1), {}, admit=admission(
        KeyLimitStore(store.redis, limits, store.prefix), fair, owner, job_id))
    return job_id


def release_all(fair, max_running=0) -> list[str]:
    order = []
    while (released := fair.release(max_running)) is not None:
        fair.sent(released.job_id)
        order.append(released.job_id)
    return order


def test_a_key_that_arrives_later_goes_before_the_rest_of_a_big_batch(store, fair):
    a = [submit(store, fair, "key-a") for _ in range(20)]
    first = fair.release(0)
    assert first.job_id == a[0] and first.owner == "key-a"
    b = submit(store, fair, "key-b")
    assert fair.release(0).job_id == b, "B's only job goes before A's second"
    assert release_all(fair) == a[1:], "then A's jobs, in the order A sent them"


def test_keys_take_turns(store, fair):
    a = [submit(store, fair, "key-a") for _ in range(3)]
    b = [submit(store, fair, "key-b") for _ in range(2)]
    c = [submit(store, fair, "key-c")]
    assert release_all(fair) == [a[0], b[0], c[0], a[1], b[1], a[2]]


def test_queue_position_follows_the_release_order(store, fair):
    a = [submit(store, fair, "key-a") for _ in range(3)]
    fair.release(0)  # key-a served once: key-b, new, comes first in the next turns
    b = [submit(store, fair, "key-b") for _ in range(2)]
    c = [submit(store, fair, "key-c") for _ in range(2)]
    positions = {job_id: fair.position(owner, job_id)
                 for owner, ids in (("key-a", a[1:]), ("key-b", b), ("key-c", c)) for job_id in ids}
    order = release_all(fair)
    assert positions == {job_id: i for i, job_id in enumerate(order)}
    assert fair.position("key-a", a[0]) is None, "a released job is no longer waiting"


def test_canceled_jobs_are_dropped_and_a_key_at_its_running_limit_waits(store, fair):
    a = [submit(store, fair, "key-a") for _ in range(3)]
    store.transition(a[0], JobStatus.CANCELED)  # canceled while waiting (the API also LREMs it)
    KeyLimitStore(store.redis, NO_LIMITS, store.prefix).set_overrides("key-a", {"max_running": 1})
    assert fair.release(0).job_id == a[1]
    b = submit(store, fair, "key-b")
    assert fair.release(0).job_id == b and fair.release(0) is None, "key-a has one job on the workers"
    store.transition(a[1], JobStatus.RUNNING, worker="w")
    assert fair.release(0) is None, "still one running"
    store.transition(a[1], JobStatus.CANCELED)
    assert fair.release(0).job_id == a[2]


def test_max_queued_holds_under_concurrent_submissions(store, fair):
    limits = NO_LIMITS.merged({"max_queued": "3"})
    made, refused = [], []

    def one() -> None:
        try:
            made.append(submit(store, fair, "key-a", limits))
        except LimitExceeded as exc:
            refused.append(exc.limit)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 3 and refused == ["max_queued"] * 7
    assert sorted(release_all(fair)) == sorted(made), "exactly the recorded jobs are in the list"
    assert store.counts_by_status()[JobStatus.QUEUED] == 3


def test_gpu_seconds_are_counted_per_key_and_refuse_submissions_past_the_daily_limit(store, fair):
    job_id = submit(store, fair, "key-a")
    store.transition(job_id, JobStatus.RUNNING, worker="w")
    store.transition(job_id, JobStatus.CANCELED)
    limits = KeyLimitStore(store.redis, NO_LIMITS.merged({"gpu_seconds_per_day": "100"}), store.prefix)
    used = limits.usage("key-a").gpu_seconds_today
    assert 0 < used < 5 and limits.usage("key-a").queued == 0
    store.redis.hincrbyfloat(store.owners.gpu_key(utc_day()), "key-a", 100)
    with pytest.raises(LimitExceeded) as refused:
        submit(store, fair, "key-a", limits.defaults)
    assert refused.value.limit == "gpu_seconds_per_day" and 0 < refused.value.retry_after_s <= 86400
    submit(store, fair, "key-b", limits.defaults)  # another key is not affected


def test_a_batch_is_checked_whole_before_any_job_is_made(store, fair):
    limits = KeyLimitStore(store.redis, NO_LIMITS.merged({"max_queued": "4"}), store.prefix)
    submit(store, fair, "key-a", limits.defaults)
    submit(store, fair, "key-a", limits.defaults)
    limits.check_submission(store.redis, "key-a", adding=2)  # fits exactly
    with pytest.raises(LimitExceeded, match="3 more do not fit"):
        limits.check_submission(store.redis, "key-a", adding=3)
