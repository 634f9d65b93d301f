"""Hostile request fields: client filenames, params, URLs, job ids, malformed multipart."""

import pytest

from tests.hostile import payloads
from tests.hostile.checks import assert_refused
from tests.service.test_api_errors import assert_problem
from tests.support.media import png_bytes

HUGE_INT = "9" * 5000  # past Python's 4300-digit int conversion limit: json.loads raises ValueError


def upload(**overrides):
    return {"reference_image": ("r.png", png_bytes(), "image/png"),
            "pose_keypoints": ("k.json", payloads.openpose_frames(2), "application/json"), **overrides}


@pytest.mark.parametrize("params, field", [
    (f'{{"steps": {HUGE_INT}}}', "params"),
    ('{"seed": 1e400}', "params"),
    ('{"steps": 30, "unknown": 1}', "params.unknown"),
    ('{"steps": 0}', "params.steps"),
    ('{"steps": 201}', "params.steps"),
    ('{"steps": "30"}', "params.steps"),
    ('{"steps": true}', "params.steps"),
    ('{"steps": 30.0}', "params.steps"),
    ('{"seed": -1}', "params.seed"),
    ('{"seed": 4294967296}', "params.seed"),
    ('{"height": 65}', "params.height"),
    ('{"width": 4096}', "params.width"),
    ('{"guidance_scale": -0.1}', "params.guidance_scale"),
    ('{"fps": 0}', "params.fps"),
    ('{"max_duration_s": 1e308}', "params.max_duration_s"),
    ('{"long_video_mode": "../../etc"}', "params.long_video_mode"),
    ('{"crf": null}', "params.crf"),
    ('{"__class__": {}}', "params.__class__"),
    ('{"steps": 10, "steps": 300}', "params.steps"),  # duplicate keys: the last one counts, and is checked
    ("[]", "params"),
    ('"{}"', "params"),
    ("null", "params"),
    ('{"steps": 1' + "0" * 10, "params"),
])
def test_hostile_params(client, state, settings, params, field):
    response = client.post("/animate", files=upload(), data={"params": params})
    body = assert_refused(response, state, settings.local_storage_dir)
    assert field in body["detail"], body["detail"]


def test_huge_integers_in_keypoints_and_json_bodies_are_4xx(client, state, settings):
    files = upload(pose_keypoints=("k.json", f'{{"fps": {HUGE_INT}, "frames": []}}'.encode(), "application/json"))
    assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir, field="pose_keypoints")
    response = client.post("/animate", content=f'{{"reference_image_url": {HUGE_INT}}}'.encode(),
                           headers={"content-type": "application/json"})
    assert_refused(response, state, settings.local_storage_dir)


TRAVERSAL_NAMES = ["../../../../../tmp/unianimate-pwned.png", "/etc/passwd", "..\\..\\..\\windows\\win.ini",
                   "a/b/../../../c.png", "%2e%2e%2f%2e%2e%2fx.png", "..", ".", "x" * 200 + ".png",
                   "jobs/00000000000000000000000000000000/result.mp4", "con.png\r\nX-Injected: 1"]


@pytest.mark.parametrize("filename", TRAVERSAL_NAMES)
def test_client_filenames_never_reach_a_storage_key(client, state, settings, tmp_path, filename):
    files = {"reference_image": (filename, png_bytes(), "image/png"),
             "pose_keypoints": (filename, payloads.openpose_frames(2), "application/json")}
    response = client.post("/animate", files=files)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    root = settings.local_storage_dir
    stored = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert stored == [f"jobs/{job_id}/inputs/pose_keypoints.json", f"jobs/{job_id}/inputs/reference_image.png"]
    assert sorted(state.jobs.get(job_id).inputs.values()) == stored
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(root)]
    assert outside == [], outside


def test_overlong_part_headers_are_4xx(client, state, settings):
    files = upload(reference_image=("x" * 5000 + ".png", png_bytes(), "image/png"))
    assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir, status=400)


@pytest.mark.parametrize("field", ["../reference_image", "reference_image/../x", "reference_image\x00"])
def test_unknown_or_traversing_field_names(client, state, settings, field):
    files = {**upload(), field: ("x.png", png_bytes(), "image/png")}
    assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir)


def test_multipart_abuse_is_4xx(client, state, settings):
    too_many = [("reference_image", ("r.png", png_bytes(), "image/png"))] * 6
    assert_refused(client.post("/animate", files=too_many), state, settings.local_storage_dir, status=400)
    duplicate = [("reference_image", ("r.png", png_bytes(), "image/png"))] * 2 + [
        ("pose_keypoints", ("k.json", payloads.openpose_frames(2), "application/json"))]
    assert "more than once" in assert_refused(client.post("/animate", files=duplicate), state,
                                              settings.local_storage_dir)["detail"]
    huge_text = client.post("/animate", files=upload(), data={"params": "{" + " " * (1024 * 1024 + 10) + "}"})
    assert_refused(huge_text, state, settings.local_storage_dir, status=400)
    many_fields = client.post("/animate", files=upload(), data={f"f{i}": "1" for i in range(100)})
    assert_refused(many_fields, state, settings.local_storage_dir, status=400)
    no_boundary = client.post("/animate", content=b"abc", headers={"content-type": "multipart/form-data"})
    assert_refused(no_boundary, state, settings.local_storage_dir, status=400)


@pytest.mark.parametrize("path", [
    "/jobs/..%2f..%2fetc%2fpasswd", "/jobs/%00", "/jobs/" + "A" * 32, "/jobs/" + "a" * 31, "/jobs/" + "a" * 33,
    "/jobs/" + "g" * 32, "/jobs/" + "a" * 10_000, "/jobs/*", "/jobs/unianimate:job:*",
])
def test_malformed_job_ids_are_404(client, path):
    assert_problem(client.get(path), 404)
    assert_problem(client.post(path + "/cancel"), 404)


def test_another_keys_job_is_404_even_by_its_exact_id(make_client):
    """Extends tests/service (GET/cancel/video/events): the uppercase spelling of a real id,
    and the owner hash itself used as a key, find nothing either."""
    client = make_client(api_keys=("alice-key", "bob-key"))
    alice, bob = {"Authorization": "Bearer alice-key"}, {"Authorization": "Bearer bob-key"}
    job_id = client.post("/animate", files=upload(), headers=alice).json()["job_id"]
    owner = client.app.state.services.jobs.get(job_id).owner
    assert_problem(client.get(f"/jobs/{job_id.upper()}", headers=alice), 404)
    assert_problem(client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {owner}"}), 401)
    assert_problem(client.get(f"/jobs/{job_id}", headers=bob), 404)
    assert client.get(f"/jobs/{job_id}", headers=alice).json()["status"] == "queued"
