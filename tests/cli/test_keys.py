"""`unianimate keys`: list usage and limits, set and reset a key's own limits."""
import uuid

import pytest

from cli.keys import main
from service.jobs.key_limits import KeyLimits, KeyLimitStore
from service.jobs.owners import key_owner
from service.jobs.params import RenderParams
from service.jobs.store import JobStore


@pytest.fixture
def env(redis_url, monkeypatch):
    for name in ("UNIANIMATE_KEY_MAX_QUEUED", "UNIANIMATE_KEY_RATE_PER_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UNIANIMATE_REDIS_URL", redis_url)
    return redis_url


def test_list_set_and_reset(env, capsys):
    jobs = JobStore.from_url(env)
    owner = key_owner("alice-key")
    for _ in range(2):
        jobs.create(uuid.uuid4().hex, owner, RenderParams(seed=1), {})
    assert main(["list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["key", "queued", "waiting", "running"]
    assert row.split()[:4] == [owner[:16], "2", "0", "0"] and "100" in row.split()  # the default max_queued

    assert main(["set", owner[:16], "--max-queued", "5", "--rate-per-s", "2.5"]) == 0  # a hash prefix names it
    store = KeyLimitStore(jobs.redis, KeyLimits(20, 40, 100, 0, 0))
    assert (store.limits(owner).max_queued, store.limits(owner).rate_per_s) == (5, 2.5)
    assert main(["reset", "alice-key", "--limit", "max_queued"]) == 0  # the key itself names it too
    assert (store.limits(owner).max_queued, store.limits(owner).rate_per_s) == (100, 2.5)
    assert main(["reset", owner]) == 0 and store.overrides(owner) == {}


def test_bad_requests_say_what_to_fix(env, capsys):
    assert main(["set", "alice-key"]) == 2
    assert "name at least one limit" in capsys.readouterr().err
    assert main(["set", "alice-key", "--max-running", "-1"]) == 2
    assert ">= 0" in capsys.readouterr().err
