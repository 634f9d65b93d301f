"""POST /animate through GET/cancel/video, against real Redis and local storage."""
import hashlib
import json

from service.jobs.queue import RENDER_QUEUE, WEBHOOK_QUEUE
from service.jobs.record import JobStatus, Result
from service.storage.objects import result_key
from service.webhooks.outbox import job_events_key, record_key
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem
from tests.support.media import mp4_bytes, png_bytes


def broker_messages(state):
    return [json.loads(raw) for raw in state.jobs.redis.lrange(RENDER_QUEUE, 0, -1)]


def waiting(state, owner="anonymous"):
    """The key's fair waiting list: a render worker's dispatcher sends these to the broker."""
    return [raw.decode() for raw in state.jobs.redis.lrange(state.fair.waiting_key(owner), 0, -1)]


def submit(client, **kwargs):
    response = client.post("/animate", files=kwargs.pop("files", None) or keypoint_upload(), **kwargs)
    assert response.status_code == 202, response.text
    return response


def test_submission_stores_inputs_records_and_queues_it_for_its_key(client, state, settings):
    response = submit(client, data={"params": '{"steps": 12, "seed": 5}'})
    body = response.json()
    job_id = body["job_id"]
    assert body["status"] == "queued" and response.headers["location"].endswith(f"/jobs/{job_id}")
    assert set(body["links"]) == {"self", "events", "cancel", "video"}

    job = state.jobs.get(job_id)
    assert job.params.steps == 12 and job.params.seed == 5 and job.owner == "anonymous"
    # stored under fixed names, whatever the client called its files ("photo of me.png")
    stored = sorted(p.relative_to(settings.local_storage_dir).as_posix()
                    for p in settings.local_storage_dir.rglob("*") if p.is_file())
    assert stored == [f"jobs/{job_id}/inputs/pose_keypoints.json", f"jobs/{job_id}/inputs/reference_image.png"]
    assert state.storage.get_bytes(job.inputs["reference_image"]) == png_bytes()

    # in its key's fair list, not yet on the broker: the dispatcher releases it in fair order
    assert waiting(state) == [job_id] and broker_messages(state) == []
    assert state.fair.redis.zscore(state.fair.turns_key, "anonymous") == 0  # a key never served goes first


def test_seed_is_chosen_and_recorded_when_omitted(client, state):
    job = state.jobs.get(submit(client).json()["job_id"])
    assert job.params.seed is not None and job.params.steps == 30


def test_video_pose_source_and_webhook(make_client, tmp_path):
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))
    state = client.app.state.services
    files = {"reference_image": ("r.jpg", png_bytes(fmt="JPEG"), "image/jpeg"),
             "pose_video": ("dance.mov", mp4_bytes(tmp_path), "video/mp4")}
    data = {"webhook_url": "http://127.0.0.1:9/hook", "webhook_events": "job.succeeded,job.failed"}
    job = state.jobs.get(submit(client, files=files, data=data).json()["job_id"])
    assert sorted(job.inputs) == ["pose_video", "reference_image"]
    assert job.inputs["pose_video"].endswith("/inputs/pose_video.mp4")
    assert job.webhook.url == "http://127.0.0.1:9/hook" and job.webhook.events == ["job.failed", "job.succeeded"]


def test_get_job_shows_status_without_internals(client):
    job_id = submit(client).json()["job_id"]
    body = client.get(f"/jobs/{job_id}").json()
    assert body["id"] == job_id and body["status"] == "queued" and body["params"]["steps"] == 30
    assert body["inputs"] == ["pose_keypoints", "reference_image"]
    assert body["progress"]["fraction"] == 0.0 and body["result"] is None
    assert "owner" not in body and "worker" not in body


def test_idempotency_same_body_same_job(client, state):
    headers = {"Idempotency-Key": "order-1"}
    first = submit(client, headers=headers, data={"params": '{"steps": 9}'})
    again = submit(client, headers=headers, data={"params": '{ "steps" : 9 }'})  # same meaning
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert waiting(state) == [first.json()["job_id"]]
    different = client.post("/animate", files=keypoint_upload(), headers=headers, data={"params": '{"steps": 8}'})
    assert_problem(different, 422, "idempotency-key-reused")
    other_key = submit(client, headers={"Idempotency-Key": "order-2"}, data={"params": '{"steps": 9}'})
    assert other_key.json()["job_id"] != first.json()["job_id"]


def test_jobs_are_private_to_their_api_key(make_client):
    client = make_client(api_keys=("alice-key", "bob-key"))
    alice, bob = {"Authorization": "Bearer alice-key"}, {"Authorization": "Bearer bob-key"}
    assert_problem(client.post("/animate", files=keypoint_upload()), 401)
    job_id = submit(client, headers=alice).json()["job_id"]
    assert client.get(f"/jobs/{job_id}", headers=alice).status_code == 200
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/video", f"/jobs/{job_id}/events"):
        assert_problem(client.get(path, headers=bob), 404)
    assert_problem(client.post(f"/jobs/{job_id}/cancel", headers=bob), 404)
    owner = client.app.state.services.jobs.get(job_id).owner
    assert owner == hashlib.sha256(b"alice-key").hexdigest()
    # the same Idempotency-Key from two callers makes two jobs
    key = {"Idempotency-Key": "k"}
    assert submit(client, headers=alice | key).json()["job_id"] != submit(client, headers=bob | key).json()["job_id"]


def test_cancel_queued_job(client, state):
    job_id = submit(client).json()["job_id"]
    response = client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "canceled"
    assert client.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"  # idempotent


def test_canceling_a_queued_job_sends_one_canceled_webhook(make_client):
    """No worker ever sees a job canceled while queued, so the API sends its terminal event."""
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))
    state = client.app.state.services
    job_id = submit(client, data={"webhook_url": "http://127.0.0.1:9/hook"}).json()["job_id"]
    client.post(f"/jobs/{job_id}/cancel")
    client.post(f"/jobs/{job_id}/cancel")  # a second cancel sends nothing more
    event_ids = [i.decode() for i in state.jobs.redis.lrange(job_events_key(state.jobs.prefix, job_id), 0, -1)]
    assert len(event_ids) == 1
    record = json.loads(state.jobs.redis.get(record_key(state.jobs.prefix, event_ids[0])))
    assert record["event"]["type"] == "job.canceled" and record["url"] == "http://127.0.0.1:9/hook"
    assert json.loads(record["event"]["body"])["data"]["status"] == "canceled"
    queued = [json.loads(m) for m in state.jobs.redis.lrange(WEBHOOK_QUEUE, 0, -1)]
    assert [m["headers"]["argsrepr"] for m in queued] == [repr([event_ids[0]])]


def test_cancel_running_job_sets_flag(client, state):
    job_id = submit(client).json()["job_id"]
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    body = client.post(f"/jobs/{job_id}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True


def finish(state, job_id, data=b"\x00\x00\x00\x18ftypmp42fake-video"):
    stored = state.storage.put_bytes(result_key(job_id), data, "video/mp4")
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    state.jobs.transition(job_id, JobStatus.SUCCEEDED, result=Result(
        frames=16, fps=8, width=512, height=768, duration_s=2.0, size_bytes=stored.size_bytes,
        sha256=stored.sha256, key=stored.key))
    return data


def test_video_of_a_finished_job_is_served_from_local_storage(client, state):
    job_id = submit(client).json()["job_id"]
    assert_problem(client.get(f"/jobs/{job_id}/video"), 409, "not-ready")
    data = finish(state, job_id)
    body = client.get(f"/jobs/{job_id}").json()
    assert body["status"] == "succeeded" and body["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["result"]["url"].endswith(f"/jobs/{job_id}/video") and "key" not in body["result"]
    video = client.get(f"/jobs/{job_id}/video")
    assert video.status_code == 200 and video.content == data
    assert video.headers["content-type"] == "video/mp4"
    assert client.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=0-3"}).content == data[:4]
    assert_problem(client.post(f"/jobs/{job_id}/cancel"), 409, "job-finished")


def test_submission_does_not_need_the_broker(make_client):
    # the job waits in its key's list in Redis; the dispatcher publishes it once the broker is back
    client = make_client(broker_url="redis://127.0.0.1:1/0")
    state = client.app.state.services
    job_id = submit(client).json()["job_id"]
    assert waiting(state) == [job_id] and state.jobs.get(job_id).status is JobStatus.QUEUED


def test_a_refused_submission_leaves_nothing_behind(make_client, settings):
    client = make_client(key_max_queued=1)
    state = client.app.state.services
    first = submit(client).json()["job_id"]
    response = client.post("/animate", files=keypoint_upload(), headers={"Idempotency-Key": "retry-me"})
    problem = assert_problem(response, 429, "limit-exceeded")
    assert problem["limit"] == "max_queued" and int(response.headers["retry-after"]) >= 1
    assert state.jobs.counts_by_status()[JobStatus.QUEUED] == 1 and waiting(state) == [first]
    stored = {p.parts[len(settings.local_storage_dir.parts) + 1] for p in settings.local_storage_dir.rglob("*")
              if p.is_file()}
    assert stored == {first}, "only the accepted job's inputs are stored"
    # the Idempotency-Key was released: once the limit is lifted, the retry creates the job
    state.key_limits.set_overrides("anonymous", {"max_queued": 5})
    again = submit(client, headers={"Idempotency-Key": "retry-me"}).json()["job_id"]
    assert waiting(state) == [first, again]


def test_storage_failure_is_a_503_and_leaves_no_record(make_client, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the storage directory should be")
    client = make_client(local_storage_dir=blocker / "storage")
    assert "object storage" in assert_problem(client.post("/animate", files=keypoint_upload()), 503)["detail"]
    assert sum(client.app.state.services.jobs.counts_by_status().values()) == 0


def test_a_segment_no_worker_class_can_hold_is_refused_naming_what_to_lower(make_client, state):
    client = make_client(worker_classes="nvidia-l4-24gb")
    params = {"height": 2048, "width": 2048, "segment_frames": 128, "fps": 15}
    response = client.post("/animate", files=keypoint_upload(), data={"params": json.dumps(params)})
    assert_problem(response, 422)
    detail = response.json()["detail"]
    assert "nvidia-l4-24gb" in detail and "params.segment_frames" in detail and "params.height" in detail
    assert waiting(state) == [] and broker_messages(state) == []  # no job was queued
    # the lowered value it names is accepted
    lowered = int(detail.split("params.segment_frames to ")[1].split()[0])
    accepted = client.post("/animate", files=keypoint_upload(),
                           data={"params": json.dumps(params | {"segment_frames": lowered})})
    assert accepted.status_code == 202, accepted.text
