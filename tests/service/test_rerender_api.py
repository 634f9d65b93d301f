"""POST /jobs/{id}/rerender against real Redis and local storage (the parent's render is faked)."""
from __future__ import annotations

from service.api.routes.rerender import SEGMENT_FILES
from service.jobs.record import JobStatus, Result
from service.jobs.views import JobAccepted, JobView
from service.storage.objects import input_key, job_prefix, result_key, segment_key
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem
from worker.segment_store import FRAMES_EXT, LAST_FRAME_EXT


def make_parent(client, state, *, segments=5, stored=5, params='{"seed": 11, "steps": 4, "crf": 0}', owner=None):
    """A job submitted through the API, then 'rendered': `stored` of its `segments` checkpoints in storage."""
    response = client.post("/animate", files=keypoint_upload(), data={"params": params})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    state.jobs.update_progress(job_id, segment=segments - 1, segments_total=segments, step=4, steps_total=4,
                               frames_done=8 * segments, frames_total=8 * segments)
    for index in range(stored):
        for ext in SEGMENT_FILES:
            state.storage.put_bytes(segment_key(job_id, index, ext), f"{index}.{ext}".encode())
    stored_video = state.storage.put_bytes(result_key(job_id), b"video")
    state.jobs.transition(job_id, JobStatus.SUCCEEDED, result=Result(
        frames=8 * segments, fps=8, width=64, height=64, duration_s=5.0, size_bytes=stored_video.size_bytes,
        sha256=stored_video.sha256, key=stored_video.key))
    return job_id


def test_the_api_copies_the_files_the_worker_stores_per_segment():
    assert SEGMENT_FILES == (FRAMES_EXT, LAST_FRAME_EXT)


def test_a_rerender_copies_inputs_and_the_segments_before_k(client, state):
    parent = make_parent(client, state)
    response = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 2, "seed": 99, "steps": 6})
    assert response.status_code == 202, response.text
    body = response.json()
    child = body["job_id"]
    assert body["status"] == "queued" and response.headers["location"].endswith(f"/jobs/{child}")

    job = state.jobs.get(child)
    assert job.params.seed == 99 and job.params.steps == 6 and job.params.crf == 0
    assert job.rerender_of.model_dump() == {"parent_id": parent, "from_segment": 2, "base_seed": 11,
                                            "seed_changes": [(2, 99)]}
    assert sorted(state.storage.list(job_prefix(child) + "segments/")) == [
        segment_key(child, index, ext) for index in range(2) for ext in sorted(SEGMENT_FILES)]
    assert state.storage.get_bytes(segment_key(child, 1, "png")) == b"1.png"
    assert job.inputs == {name: input_key(child, key.rsplit("/", 1)[-1])
                          for name, key in state.jobs.get(parent).inputs.items()}
    for name, key in job.inputs.items():
        assert state.storage.get_bytes(key) == state.storage.get_bytes(state.jobs.get(parent).inputs[name])
    JobAccepted.model_validate(body)
    view = JobView.model_validate(client.get(f"/jobs/{child}").json())
    assert view.rerender_of.parent_id == parent


def test_a_rerender_of_a_rerender_keeps_the_earlier_seed_changes(client, state):
    parent = make_parent(client, state)
    first = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 3, "seed": 5}).json()["job_id"]
    for step in (JobStatus.RUNNING, JobStatus.SUCCEEDED):  # 'render' the first re-render
        if step is JobStatus.RUNNING:
            state.jobs.transition(first, step, worker="w")
            state.jobs.update_progress(first, segment=4, segments_total=5, step=1, steps_total=1,
                                       frames_done=40, frames_total=40)
            for index in range(3, 5):
                for ext in SEGMENT_FILES:
                    state.storage.put_bytes(segment_key(first, index, ext), b"x")
        else:
            state.jobs.transition(first, step, result=state.jobs.get(parent).result)
    second = client.post(f"/jobs/{first}/rerender", json={"from_segment": 4, "seed": 6})
    assert second.status_code == 202, second.text
    origin = state.jobs.get(second.json()["job_id"]).rerender_of
    assert (origin.base_seed, origin.seed_changes) == (11, [(3, 5), (4, 6)])
    earlier = client.post(f"/jobs/{first}/rerender", json={"from_segment": 1, "seed": 7}).json()["job_id"]
    assert state.jobs.get(earlier).rerender_of.seed_changes == [(1, 7)], "changes from k on are replaced"


def test_the_seed_is_chosen_when_omitted(client, state):
    parent = make_parent(client, state)
    child = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 0}).json()["job_id"]
    job = state.jobs.get(child)
    assert job.params.seed is not None and job.rerender_of.seed_changes == [(0, job.params.seed)]
    assert state.storage.list(job_prefix(child) + "segments/") == []


def test_refusals_say_what_to_fix(client, state):
    parent = make_parent(client, state)
    body = assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 5, "seed": 1}), 422,
                          "invalid-request")
    assert "between 0 and 4" in body["detail"]
    assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1, "height": 128}), 422)
    assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": "1"}), 422)
    assert_problem(client.post(f"/jobs/{parent}/rerender", content=b"from_segment=1"), 415)
    assert_problem(client.post(f"/jobs/{'0' * 32}/rerender", json={"from_segment": 1}), 404, "not-found")

    queued = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    body = assert_problem(client.post(f"/jobs/{queued}/rerender", json={"from_segment": 0}), 409, "cannot-rerender")
    assert "only a succeeded job" in body["detail"]

    window = make_parent(client, state, params='{"long_video_mode": "window"}', segments=1, stored=0)
    body = assert_problem(client.post(f"/jobs/{window}/rerender", json={"from_segment": 0}), 409, "cannot-rerender")
    assert "window mode" in body["detail"] and "long_video_mode chain" in body["detail"]


def test_segments_no_longer_stored_refuse_and_leave_nothing(client, state, settings):
    parent = make_parent(client, state, stored=1)
    before = {p for p in settings.local_storage_dir.rglob("*") if p.is_file()}
    body = assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 3}), 409, "cannot-rerender")
    assert "[1, 2]" in body["detail"]
    assert {p for p in settings.local_storage_dir.rglob("*") if p.is_file()} == before
    assert client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1}).status_code == 202


def test_other_keys_get_404_and_idempotency_replays(make_client):
    client = make_client(api_keys="alice-key-0123,bob-key-0123456")
    state = client.app.state.services
    client.headers["Authorization"] = "Bearer alice-key-0123"
    parent = make_parent(client, state)
    bob = {"Authorization": "Bearer bob-key-0123456"}
    assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1}, headers=bob), 404)

    key = {"Idempotency-Key": "rerender-1"}
    first = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1, "seed": 3}, headers=key)
    again = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1, "seed": 3}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
    assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 2, "seed": 3}, headers=key), 422,
                   "idempotency-key-reused")


def test_per_key_limits_apply(make_client):
    client = make_client(key_max_queued=1)
    state = client.app.state.services
    parent = make_parent(client, state)
    assert client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1}).status_code == 202
    body = assert_problem(client.post(f"/jobs/{parent}/rerender", json={"from_segment": 1}), 429, "limit-exceeded")
    assert body["limit"] == "max_queued"
