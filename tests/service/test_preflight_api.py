"""POST /animate/preflight against a real Redis and local storage: the report, the stored preview,
the same 4xx answers as POST /animate, and no job."""
from __future__ import annotations

import io
import json
import time

import av
import pytest
from PIL import Image

from tests.support.dance import (
    dance_keypoints_bytes,
    person_png,
    reference_keypoints_bytes,
    skeleton_mp4_bytes,
)
from tests.support.media import png_bytes

SMALL = json.dumps({"height": 64, "width": 64, "segment_frames": 32})


def dance_files(frames: int = 30, fps: float = 15) -> dict:
    return {"reference_image": ("person.png", person_png(), "image/png"),
            "reference_keypoints": ("person.json", reference_keypoints_bytes(), "application/json"),
            "pose_keypoints": ("dance.json", dance_keypoints_bytes(frames, fps), "application/json")}


def job_keys(state) -> list[bytes]:
    return list(state.jobs.redis.scan_iter(f"{state.jobs.prefix}:job:*"))


def test_a_minute_of_keypoints_is_reported_planned_estimated_and_previewed(client, state):
    answer = client.post("/animate/preflight", files=dance_files(frames=1800, fps=30), data={"params": SMALL})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    pose = body["pose"]
    assert (pose["frames"], pose["source_fps"], pose["frame_interval"], pose["output_fps"]) == (900, 30.0, 2, 15.0)
    assert pose["duration_s"] == 60.0 and pose["has_keypoints"] and pose["missing_joints"] == []
    assert pose["proportions"]["x_ratio"] == pytest.approx(1.0) and pose["alignment"]["y_ratio"] == pytest.approx(1.0)
    plan = body["segments"]
    assert plan["count"] == 29 and plan["segments"][0] == {"index": 0, "start": 0, "stop": 32, "new_frames": 32}
    assert sum(s["new_frames"] for s in plan["segments"]) == 900
    classes = {e["worker_class"]: e for e in body["estimates"]}
    assert set(classes) == set(state.settings.worker_classes)
    assert all(e["gpu_seconds"] > 0 and e["calibrated_on"] == "uncalibrated" for e in classes.values())
    assert job_keys(state) == []  # no job record
    strip = client.get(body["preview"]["strip_url"])
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(strip.content)).size[0] > 8 * 64  # eight tiles, scaled up
    clip = client.get(body["preview"]["clip_url"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(clip.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 45  # the first 3 s at 15 fps


def test_missing_joints_are_listed_per_frame(client):
    document = json.loads(dance_keypoints_bytes(6, 15))
    points = document["frames"][2]["people"][0]["pose_keypoints_2d"]
    points[3 * 4 + 2] = 0.0  # right wrist of frame 2 not seen
    files = dance_files() | {"pose_keypoints": ("dance.json", json.dumps(document).encode(), "application/json")}
    body = client.post("/animate/preflight", files=files, data={"params": SMALL}).json()
    assert [(e["frame"], e["body"]) for e in body["pose"]["missing_joints"]] == [(2, ["right wrist"])]


def test_a_skeleton_video_is_planned_and_previewed_without_keypoints(client, tmp_path):
    files = {"reference_image": ("person.png", person_png(), "image/png"),
             "reference_keypoints": ("person.json", reference_keypoints_bytes(), "application/json"),
             "pose_video": ("skeleton.mp4", skeleton_mp4_bytes(tmp_path, frames=8, fps=8), "video/mp4")}
    body = client.post("/animate/preflight", files=files, data={"params": SMALL}).json()
    assert body["input"] == "skeleton_video" and body["pose"]["has_keypoints"] is False
    assert body["pose"]["frames"] == 8 and body["segments"]["count"] == 1
    assert client.get(body["preview"]["strip_url"]).status_code == 200


@pytest.mark.parametrize("case", ["no motion", "bad params", "bad image"])
def test_bad_input_gets_the_same_problem_as_animate(client, state, case):
    files, data = dance_files(), {"params": SMALL}
    if case == "no motion":
        del files["pose_keypoints"]
    elif case == "bad params":
        data = {"params": json.dumps({"steps": 0})}
    else:
        files["reference_image"] = ("person.png", b"not a png", "image/png")
    preflight = client.post("/animate/preflight", files=files, data=data)
    animate = client.post("/animate", files=files, data=data)
    assert preflight.status_code == animate.status_code == 422
    # (the words; a decoder's message may name the request's own temp file)
    assert preflight.json()["detail"].split("(")[0] == animate.json()["detail"].split("(")[0]
    assert client.post("/animate/preflight", content=b"x", headers={"content-type": "text/plain"}).status_code == 415


def test_a_motion_the_worker_would_refuse_is_a_422_that_says_why(client):
    files = dance_files()
    del files["reference_keypoints"]  # no extractor configured: the photo's pose must be sent
    answer = client.post("/animate/preflight", files=files, data={"params": SMALL})
    assert answer.status_code == 422 and "reference_keypoints is required" in answer.json()["detail"]


def test_previews_expire_and_are_deleted(make_client, state):
    client = make_client(preview_retention_s=60)
    body = client.post("/animate/preflight", files=dance_files(), data={"params": SMALL}).json()
    preview_id = body["preview"]["id"]
    assert client.get(body["preview"]["strip_url"]).status_code == 200
    store_key = f"{state.jobs.prefix}:previews"
    state.jobs.redis.zadd(store_key, {preview_id: time.time() - 1})  # its time has come
    gone = client.get(body["preview"]["strip_url"])
    assert gone.status_code == 404 and "run the preflight again" in gone.json()["detail"]
    client.post("/animate/preflight", files=dance_files(), data={"params": SMALL})  # sweeps
    assert state.storage.list(f"previews/{preview_id}/") == []
    assert state.jobs.redis.zscore(store_key, preview_id) is None
    assert client.get(f"/previews/{'0' * 32}/strip.png").status_code == 404
    assert client.get(f"/previews/{preview_id}/../../etc").status_code == 404


def test_preflight_needs_the_api_key(make_client):
    client = make_client(api_keys="key-0123456789abcdef")
    assert client.post("/animate/preflight", files=dance_files()).status_code == 401
    assert png_bytes()  # (media helpers shared with the /animate tests)


def test_preflight_and_previews_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/animate/preflight"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "/previews/{preview_id}/{name}" in paths
