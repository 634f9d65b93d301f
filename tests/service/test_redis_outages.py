"""Redis refusing service (full, read-only, failing over, loading) is a 503 with Retry-After, not a 500.

Each case runs against a private redis-server put into that condition (CONFIG SET maxmemory 1 is
what `noeviction` does when memory runs out; REPLICAOF an absent primary is a failover's demoted
node), or, where Redis cannot be made to say it on demand, a store that raises the exact error.
"""
from collections.abc import Iterator

import pytest
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from service.api.outages import redis_outage
from service.jobs.status_read import FastReads
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem
from tests.support.procs import free_port
from tests.support.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def outage_client(make_client, private_redis):
    client = make_client(redis_url=private_redis.url)
    yield client
    admin = private_redis.client()
    admin.config_set("maxmemory", 0)
    admin.replicaof("NO", "ONE")
    admin.config_set("replica-serve-stale-data", "yes")
    admin.flushall()


def assert_503(response, words: str) -> dict:
    body = assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "5"
    assert words in body["detail"] and "retry later" in body["detail"]
    return body


def test_out_of_memory_under_noeviction_is_a_503(outage_client, private_redis):
    job_id = outage_client.post("/animate", files=keypoint_upload()).json()["job_id"]
    private_redis.client().config_set("maxmemory", 1)
    assert_503(outage_client.post("/animate", files=keypoint_upload()), "out of memory")
    assert_503(outage_client.post(f"/jobs/{job_id}/cancel"), "out of memory")
    assert outage_client.get(f"/jobs/{job_id}").json()["status"] == "queued"  # reads still work
    jobs = outage_client.app.state.services.jobs
    assert sum(jobs.counts_by_status().values()) == 1  # the refused submission left no record


def test_a_read_only_replica_is_a_503(outage_client, private_redis):
    job_id = outage_client.post("/animate", files=keypoint_upload()).json()["job_id"]
    admin = private_redis.client()
    admin.replicaof("127.0.0.1", free_port())  # demoted, its primary gone: what a failover leaves behind
    assert_503(outage_client.post(f"/jobs/{job_id}/cancel"), "read-only")
    assert_503(outage_client.post("/animate", files=keypoint_upload()), "read-only")
    admin.config_set("replica-serve-stale-data", "no")
    assert_503(outage_client.get(f"/jobs/{job_id}"), "lost its link to the primary")


@pytest.mark.parametrize("error, words", [
    (BusyLoadingError("Redis is loading the dataset in memory"), "loading its data"),
    (AuthenticationError("invalid username-password pair"), "wrong password"),
    (ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
                   "persist to disk."), "cannot persist"),
    (ResponseError("Command # 1 (SET unianimate:job:x) of pipeline caused error: MISCONF Errors writing "
                   "to the AOF file"), "cannot persist"),
    (ResponseError("NOREPLICAS Not enough good replicas to write."), "replicas"),
])
def test_other_transient_server_errors_are_503s(client, monkeypatch, error, words):
    async def refuse(self, owner, job_id):  # GET /jobs/{id}'s one round trip (service.jobs.status_read)
        raise error
    monkeypatch.setattr(FastReads, "read_job", refuse)
    assert_503(client.get("/jobs/" + "a" * 32), words)


def test_a_malformed_command_is_still_a_500(client, monkeypatch, caplog):
    async def bug(self, owner, job_id):
        raise ResponseError("ERR unknown command 'JSON.GET', with args beginning with: ")
    monkeypatch.setattr(FastReads, "read_job", bug)
    body = assert_problem(client.get("/jobs/" + "a" * 32), 500, "internal")
    assert "JSON.GET" not in body["detail"]  # nothing internal leaks
    assert any("unhandled error" in r.message and r.exc_info for r in caplog.records)


def test_outage_classification():
    assert redis_outage(ResponseError("WRONGTYPE Operation against a key holding the wrong kind")) is None
    assert redis_outage(ValueError("not redis")) is None
    assert redis_outage(RedisConnectionError("Connection refused")) == "Redis is unreachable"
