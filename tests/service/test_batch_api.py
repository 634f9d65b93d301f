"""POST /animate/batch and GET /groups/{id} against real Redis and local storage (no worker)."""
from __future__ import annotations

import json

import pytest

from service.jobs.groups import GROUP_COMPLETED
from service.jobs.record import JobError, JobStatus, Result
from service.jobs.views import BatchAccepted, GroupView
from service.storage.objects import result_key
from service.webhooks.outbox import job_events_key, record_key
from tests.service.test_api_errors import assert_problem
from tests.support.media import keypoints_bytes, png_bytes

HOOK = "http://127.0.0.1:9/hook"


def batch_files(references: int = 3, keypoints: int | None = None) -> list[tuple]:
    """Multipart parts: `reference_image` repeated (each a different photo), then the motion."""
    parts = [("reference_image", (f"ref{i}.png", png_bytes(64 + 64 * (i % 2), 96), "image/png"))
             for i in range(references)]
    parts += [("reference_keypoints", (f"ref{i}.json", keypoints_bytes(1), "application/json"))
              for i in range(references if keypoints is None else keypoints)]
    parts.append(("pose_keypoints", ("dance.json", keypoints_bytes(4), "application/json")))
    return parts


def post_batch(client, files=None, **kwargs):
    return client.post("/animate/batch", files=files if files is not None else batch_files(), **kwargs)


@pytest.fixture
def hooked(make_client):
    return make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))


def test_one_job_per_reference_sharing_one_stored_motion(client, state, settings):
    response = post_batch(client, data={"params": '{"steps": 3}'})
    assert response.status_code == 202, response.text
    body = response.json()
    group_id, job_ids = body["group_id"], [entry["job_id"] for entry in body["jobs"]]
    assert len(job_ids) == 3 and response.headers["location"].endswith(f"/groups/{group_id}")
    jobs = [state.jobs.get(job_id) for job_id in job_ids]
    assert {job.group_id for job in jobs} == {group_id}
    assert len({job.params.seed for job in jobs}) == 1 and jobs[0].params.steps == 3, "one seed for the batch"
    motion = {job.inputs["pose_keypoints"] for job in jobs}
    assert motion == {f"jobs/{job_ids[0]}/inputs/pose_keypoints.json"}, "the motion is stored once"
    stored = {p.relative_to(settings.local_storage_dir).as_posix() for p in settings.local_storage_dir.rglob("*")
              if p.is_file()}
    assert sum(key.endswith("pose_keypoints.json") for key in stored) == 1
    # the references in order: each job has its own photo
    assert [state.storage.get_bytes(job.inputs["reference_image"]) for job in jobs] == [
        png_bytes(64 + 64 * (i % 2), 96) for i in range(3)]

    group = client.get(f"/groups/{group_id}").json()
    assert group["status"] == "running" and group["total"] == 3 and group["counts"] == {"queued": 3}
    assert [entry["job_id"] for entry in group["jobs"]] == job_ids
    assert group["jobs"][0]["links"]["self"].endswith(f"/jobs/{job_ids[0]}")


def test_json_batch_needs_matching_keypoint_lists(client):
    body = {"reference_image_urls": ["https://a.example/1.png", "https://a.example/2.png"],
            "reference_keypoints_urls": ["https://a.example/1.json"],
            "pose_keypoints_url": "https://a.example/m.json"}
    detail = assert_problem(client.post("/animate/batch", json=body), 422, "invalid-request")["detail"]
    assert "one per reference image" in detail
    assert_problem(client.post("/animate/batch", json={**body, "reference_image_urls": []}), 422)


def test_refusals_name_the_reference_and_create_nothing(make_client, settings):
    client = make_client(batch_max_references=2)
    state = client.app.state.services
    too_many = batch_files(3, keypoints=0)
    assert "at most 2" in assert_problem(post_batch(client, files=too_many), 422, "invalid-request")["detail"]
    assert "one per reference" in assert_problem(post_batch(client, files=batch_files(2, keypoints=1)), 422)["detail"]
    parts = batch_files(2)
    parts[1] = ("reference_image", ("bad.png", b"not an image", "image/png"))
    detail = assert_problem(post_batch(client, files=parts), 422, "invalid-input")["detail"]
    assert detail.startswith("reference 1:")
    two_motions = batch_files(1) + [("pose_keypoints", ("m.json", keypoints_bytes(2), "application/json"))]
    assert_problem(post_batch(client, files=two_motions), 422, "invalid-request")
    assert state.jobs.counts_by_status()[JobStatus.QUEUED] == 0
    assert not [p for p in settings.local_storage_dir.rglob("*") if p.is_file()]


def test_all_or_nothing_under_the_keys_queued_limit(make_client, settings):
    client = make_client(key_max_queued=4)
    state = client.app.state.services
    assert post_batch(client).status_code == 202
    body = assert_problem(post_batch(client, files=batch_files(2)), 429, "limit-exceeded")
    assert body["limit"] == "max_queued" and "2 more do not fit" in body["detail"]
    assert state.jobs.counts_by_status()[JobStatus.QUEUED] == 3
    assert post_batch(client, files=batch_files(1)).status_code == 202


def test_idempotent_batch_replays_the_group(client):
    key = {"Idempotency-Key": "batch-1"}
    first, again = post_batch(client, headers=key), post_batch(client, headers=key)
    assert first.status_code == again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert first.json()["group_id"] == again.json()["group_id"]
    assert [j["job_id"] for j in first.json()["jobs"]] == [j["job_id"] for j in again.json()["jobs"]]
    assert_problem(post_batch(client, files=batch_files(2), headers=key), 422, "idempotency-key-reused")


def test_groups_are_private_to_their_key(make_client):
    client = make_client(api_keys="alice-key-0123,bob-key-0123456")
    group_id = post_batch(client, headers={"Authorization": "Bearer alice-key-0123"}).json()["group_id"]
    assert_problem(client.get(f"/groups/{group_id}", headers={"Authorization": "Bearer bob-key-0123456"}), 404)
    assert_problem(client.get("/groups/nope", headers={"Authorization": "Bearer alice-key-0123"}), 404)


def group_events(state, group_id):
    ids = [i.decode() for i in state.jobs.redis.lrange(job_events_key(state.jobs.prefix, f"group-{group_id}"), 0, -1)]
    return [json.loads(state.jobs.redis.get(record_key(state.jobs.prefix, i))) for i in ids]


def test_group_completed_is_recorded_once_when_the_last_member_ends(hooked):
    state = hooked.app.state.services
    body = post_batch(hooked, data={"webhook_url": HOOK}).json()
    group_id, (first, second, third) = body["group_id"], [entry["job_id"] for entry in body["jobs"]]
    stored = state.storage.put_bytes(result_key(first), b"video")
    state.jobs.transition(first, JobStatus.RUNNING, worker="w")
    state.jobs.transition(first, JobStatus.SUCCEEDED, result=Result(
        frames=4, fps=8, width=64, height=96, duration_s=0.5, size_bytes=stored.size_bytes, sha256=stored.sha256,
        key=stored.key))
    state.jobs.transition(second, JobStatus.FAILED, error=JobError(code="invalid_input", message="no"))
    hooked.post(f"/jobs/{third}/cancel")  # the API ends the last member: it announces the group
    hooked.post(f"/jobs/{third}/cancel")
    events = group_events(state, group_id)
    assert len(events) == 1 and events[0]["url"] == HOOK
    event = json.loads(events[0]["event"]["body"])
    assert event["type"] == GROUP_COMPLETED and event["data"]["status"] == "completed"
    assert event["data"]["counts"] == {"canceled": 1, "failed": 1, "succeeded": 1}
    view = hooked.get(f"/groups/{group_id}").json()
    assert view["status"] == "completed" and view["jobs"][0]["result"]["sha256"] == stored.sha256
    assert view["jobs"][1]["error"]["code"] == "invalid_input"


def test_answers_match_the_documented_views(client, state):
    accepted = BatchAccepted.model_validate(post_batch(client).json())
    view = GroupView.model_validate(client.get(f"/groups/{accepted.group_id}").json())
    assert [member.job_id for member in view.jobs] == [job.job_id for job in accepted.jobs]
    paths = client.get("/openapi.json").json()["paths"]
    schema = paths["/groups/{group_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/GroupView"}
