"""Many tenants, one worker: fair order across keys and per-key limits, on the real stack."""
from __future__ import annotations

import concurrent.futures

import pytest

from service.jobs.key_limits import KeyLimits, KeyLimitStore
from service.jobs.owners import key_owner
from tests.integration.stack import KEY_A, KEY_B, wait_for_status
from tests.integration.test_end_to_end import submit, upload

pytestmark = pytest.mark.integration
BATCH = 20
LONGER = {"seconds": 3.0}  # a few segments each: A's batch outlasts B's submission by far


def cancel_all(client, ids) -> None:
    for job_id in ids:
        client.post(f"/jobs/{job_id}/cancel")


def test_a_later_key_starts_before_a_big_batch_is_through(stack):
    with stack.client(KEY_A) as alice, stack.client(KEY_B) as bob:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            batch = list(pool.map(lambda _: submit(alice, **LONGER), range(BATCH)))
        bobs = submit(bob, **LONGER)
        try:
            assert bob.get(f"/jobs/{bobs}").json()["queue_position"] <= 1, "bob's job is next or the one after"
            wait_for_status(bob, bobs, {"running", "succeeded"}, timeout_s=300)
            started = [job_id for job_id in batch if alice.get(f"/jobs/{job_id}").json()["started_at"]]
            assert len(started) <= 2, f"{len(started)} of alice's jobs started before bob's"
        finally:
            cancel_all(alice, batch)
        assert wait_for_status(bob, bobs, {"succeeded", "failed"}, timeout_s=300)["status"] == "succeeded"


def test_over_the_queued_limit_is_429_and_nothing_is_lost_when_it_is_lifted(stack):
    limits = KeyLimitStore(stack.redis.client(), KeyLimits(0, 1, 0, 0, 0))
    owner = key_owner(KEY_A)
    with stack.client(KEY_A) as alice:
        accepted = [submit(alice, **LONGER) for _ in range(3)]
        limits.set_overrides(owner, {"max_queued": 2})
        try:
            refused = alice.post("/animate", **upload())
            assert refused.status_code == 429, refused.text
            assert refused.json()["limit"] == "max_queued" and int(refused.headers["retry-after"]) >= 1
        finally:
            limits.clear_overrides(owner)
        again = submit(alice)  # lifted: accepted at once
        for job_id in accepted[1:]:
            alice.post(f"/jobs/{job_id}/cancel")  # only to keep the suite short
        for job_id in (accepted[0], again):
            assert wait_for_status(alice, job_id, {"succeeded", "failed", "canceled"})["status"] == "succeeded"
