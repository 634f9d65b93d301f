"""The job lease: one holder at a time, renewed by a heartbeat, lost when someone else takes it."""
from __future__ import annotations

import time

import pytest

from worker.lease import Heartbeat, JobLease, LeaseLost, lease_alive

JOB = "a" * 32


def test_only_one_worker_holds_a_lease(jobs):
    first, second = (JobLease(jobs.redis, jobs.prefix, JOB, ttl_s=5) for _ in range(2))
    assert first.acquire() and not second.acquire()
    assert not second.renew(), "a worker cannot renew a lease it does not hold"
    second.release()
    assert lease_alive(jobs.redis, jobs.prefix, JOB), "nor release it"
    first.release()
    assert not lease_alive(jobs.redis, jobs.prefix, JOB) and second.acquire()


def test_an_unrenewed_lease_expires(jobs):
    lease = JobLease(jobs.redis, jobs.prefix, JOB, ttl_s=0.3)
    assert lease.acquire()
    time.sleep(0.5)
    assert not lease_alive(jobs.redis, jobs.prefix, JOB) and not lease.renew()


def test_the_heartbeat_keeps_the_lease_past_its_ttl(jobs):
    lease = JobLease(jobs.redis, jobs.prefix, JOB, ttl_s=0.3)
    assert lease.acquire()
    with Heartbeat(lease) as heartbeat:
        time.sleep(1.0)
        assert lease_alive(jobs.redis, jobs.prefix, JOB)
        heartbeat.check()


def test_the_heartbeat_notices_a_takeover(jobs):
    lease = JobLease(jobs.redis, jobs.prefix, JOB, ttl_s=0.3)
    assert lease.acquire()
    with Heartbeat(lease) as heartbeat:
        jobs.redis.set(lease.key, "someone else")
        assert heartbeat.lost.wait(2.0)
        with pytest.raises(LeaseLost):
            heartbeat.check()
