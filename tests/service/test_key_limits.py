"""Per-key request rate, the one-round-trip status read and its queue position, through the API."""
import json

import redis
import redis.asyncio.connection
import redis.connection
from starlette.requests import Request

from service.api.routes.jobs import job_view
from service.jobs.owners import key_owner
from service.jobs.record import JobStatus, Result
from service.jobs.views import JobView
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem

ALICE, BOB = {"Authorization": "Bearer alice-key"}, {"Authorization": "Bearer bob-key"}
KEYS = ("alice-key", "bob-key")


def submit(client, headers):
    response = client.post("/animate", files=keypoint_upload(), headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_a_key_over_its_request_rate_gets_429_and_others_do_not(make_client):
    client = make_client(api_keys=KEYS, key_rate_per_s=0.1, key_burst=3)  # a token per 10 s: none comes back during the test
    job_id = submit(client, ALICE)  # one token
    assert client.get(f"/jobs/{job_id}", headers=ALICE).status_code == 200  # two
    assert client.post(f"/jobs/{'0' * 32}/cancel", headers=ALICE).status_code == 404  # three: bucket empty
    for response in (client.get(f"/jobs/{job_id}", headers=ALICE), client.post("/animate", headers=ALICE)):
        problem = assert_problem(response, 429, "limit-exceeded")
        assert problem["limit"] == "rate_per_s" and 1 <= int(response.headers["retry-after"]) <= 10
    assert client.get(f"/jobs/{'0' * 32}", headers=BOB).status_code == 404, "bob has his own bucket"
    # an operator lifts alice's rate: at once, in every API process (the override is in Redis)
    client.app.state.services.key_limits.set_overrides(key_owner("alice-key"), {"rate_per_s": 1000})
    assert client.get(f"/jobs/{job_id}", headers=ALICE).status_code == 200


def _request(app) -> Request:
    """A request to the test client's host, for building the links outside a request."""
    return Request({"type": "http", "scheme": "http", "server": ("testserver", 80), "root_path": "", "path": "/",
                    "query_string": b"", "headers": [(b"host", b"testserver")], "app": app, "router": app.router})


def test_a_status_read_is_one_redis_round_trip(make_client, monkeypatch):
    client = make_client(api_keys=KEYS)
    job_id = submit(client, ALICE)
    client.get(f"/jobs/{job_id}", headers=ALICE)  # connects and loads the script once
    sent = []
    for module in (redis.connection, redis.asyncio.connection):  # every command, sync or asyncio
        original = module.AbstractConnection.send_packed_command

        def counted(self, command, *args, _original=original, **kwargs):
            sent.append(command)
            return _original(self, command, *args, **kwargs)

        monkeypatch.setattr(module.AbstractConnection, "send_packed_command", counted)
    assert client.get(f"/jobs/{job_id}", headers=ALICE).status_code == 200
    assert len(sent) == 1 and b"EVALSHA" in b"".join(map(bytes, sent[0])), sent


def test_the_unvalidated_view_is_the_validated_one(make_client):
    client = make_client(api_keys=KEYS)
    state = client.app.state.services
    queued, done = submit(client, ALICE), submit(client, ALICE)
    state.jobs.transition(done, JobStatus.RUNNING, worker="w")
    state.jobs.transition(done, JobStatus.SUCCEEDED, result=Result(
        frames=8, fps=8, width=64, height=64, duration_s=1, size_bytes=3, sha256="ab" * 32, key=f"jobs/{done}/r.mp4"))
    for job_id in (queued, done):
        body = client.get(f"/jobs/{job_id}", headers=ALICE).json()
        body.pop("queue_position", None)
        assert body == json.loads(json.dumps(job_view(_request(client.app), state.jobs.get(job_id), state)))
        JobView.model_validate(body)


def test_a_record_from_before_a_field_existed_still_reads(make_client):
    client = make_client(api_keys=KEYS)
    state = client.app.state.services
    job_id = submit(client, ALICE)
    key = f"{state.jobs.prefix}:job:{job_id}"
    doc = json.loads(state.jobs.redis.get(key))
    del doc["handbacks"], doc["progress"]["eta_s"]  # as an older version wrote it
    state.jobs.redis.set(key, json.dumps(doc))
    body = client.get(f"/jobs/{job_id}", headers=ALICE).json()
    assert body["handbacks"] == 0 and body["progress"]["eta_s"] is None


def test_queue_position_follows_the_fair_order(make_client):
    client = make_client(api_keys=KEYS)
    state = client.app.state.services
    alice = [submit(client, ALICE) for _ in range(3)]
    assert state.fair.release(0).job_id == alice[0]  # alice served once
    bob = submit(client, BOB)

    def position(job_id, who):
        return client.get(f"/jobs/{job_id}", headers=who).json().get("queue_position")

    # bob, new, is next; alice's others follow; the released job waits in no list
    assert [position(bob, BOB), position(alice[1], ALICE), position(alice[2], ALICE)] == [0, 1, 2]
    assert position(alice[0], ALICE) is None
    assert client.post(f"/jobs/{bob}/cancel", headers=BOB).status_code == 202
    assert position(alice[1], ALICE) == 0, "a canceled job leaves the queue at once"
