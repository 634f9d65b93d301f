"""Issue 15 on the real stack: re-render from a segment, one motion for many references, manifests."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
import redis
from standardwebhooks import Webhook as Verifier

from model.longvideo.planner import plan_segments
from scripts.demo import demo_keypoints, demo_reference_image, demo_reference_keypoints
from service.webhooks.outbox import job_events_key
from tests.integration.stack import SMALL, WEBHOOK_SECRET, wait_for_status
from tests.integration.test_end_to_end import submit
from tests.worker.receiver import webhook_receiver

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "service/jobs/manifest.schema.json").read_text())
FINAL = {"succeeded", "failed", "canceled"}


def decoded(client, job_id: str, tmp_path: Path) -> np.ndarray:
    video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
    assert video.status_code == 200, video.text
    path = tmp_path / f"{job_id}.mp4"
    path.write_bytes(video.content)
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def valid_manifest(client, job_id: str) -> dict:
    response = client.get(f"/jobs/{job_id}/manifest")
    assert response.status_code == 200, response.text
    manifest = response.json()
    jsonschema.validate(manifest, SCHEMA)
    return manifest


def test_rerender_from_segment_2_keeps_the_frames_before_it(stack, tmp_path):
    with stack.client() as client:
        parent = submit(client, seconds=2.0, fps=15, params={"crf": 0})  # 30 frames: 5 segments, lossless
        job = wait_for_status(client, parent, FINAL)
        assert job["status"] == "succeeded", job["error"]
        assert job["progress"]["segments_total"] == 5
        response = client.post(f"/jobs/{parent}/rerender", json={"from_segment": 2, "seed": 4242})
        assert response.status_code == 202, response.text
        child = response.json()["job_id"]
        done = wait_for_status(client, child, FINAL)
        assert done["status"] == "succeeded", done["error"]
        assert done["rerender_of"]["parent_id"] == parent and done["params"]["seed"] == 4242
        assert [entry["index"] for entry in done["segments"]] == [2, 3, 4], "segments 0 and 1 are the parent's"

        theirs, ours = decoded(client, parent, tmp_path), decoded(client, child, tmp_path)
        before = plan_segments(30, SMALL["segment_frames"]).segments[2].first_new
        assert ours.shape == theirs.shape == (30, 64, 64, 3)
        assert np.array_equal(ours[:before], theirs[:before])
        assert all(not np.array_equal(a, b) for a, b in zip(ours[before:], theirs[before:], strict=True))

        parent_manifest, manifest = valid_manifest(client, parent), valid_manifest(client, child)
    assert manifest["rerender_of"]["from_segment"] == 2
    assert manifest["seed_plan"] == {"base_seed": SMALL["seed"], "changes": [[2, 4242]]}
    assert [s["seed"] for s in manifest["segments"][:2]] == [s["seed"] for s in parent_manifest["segments"][:2]]
    assert [s["seed"] for s in manifest["segments"][2:]] != [s["seed"] for s in parent_manifest["segments"][2:]]
    assert manifest["inputs"] == parent_manifest["inputs"], "the same inputs, copied"


def test_rerender_refusals_on_the_stack(stack):
    with stack.client() as client:
        window = submit(client, seconds=1.0, params={"long_video_mode": "window"})
        assert wait_for_status(client, window, FINAL)["status"] == "succeeded"
        refused = client.post(f"/jobs/{window}/rerender", json={"from_segment": 0, "seed": 1})
    assert refused.status_code == 409 and "window mode" in refused.json()["detail"]


def batch_upload(references: int, **fields) -> dict:
    files = [("reference_image", (f"person{i}.png", demo_reference_image(96 + 32 * i, 144 + 48 * i), "image/png"))
             for i in range(references)]
    files += [("reference_keypoints", (f"person{i}.json", json.dumps(demo_reference_keypoints()), "application/json"))
              for i in range(references)]
    files.append(("pose_keypoints", ("motion.json", json.dumps(demo_keypoints(1.0, 15)), "application/json")))
    return {"files": files, "data": {"params": json.dumps(SMALL), **fields}}


def test_a_batch_of_three_references_completes_one_group(stack):
    with webhook_receiver() as receiver, stack.client() as client:
        response = client.post("/animate/batch", **batch_upload(3, webhook_url=receiver.url,
                                                                webhook_events="group.completed"))
        assert response.status_code == 202, response.text
        body = response.json()
        group_id, job_ids = body["group_id"], [entry["job_id"] for entry in body["jobs"]]
        assert len(job_ids) == 3
        jobs = [wait_for_status(client, job_id, FINAL) for job_id in job_ids]
        assert [job["status"] for job in jobs] == ["succeeded"] * 3, [job["error"] for job in jobs]
        assert {job["group_id"] for job in jobs} == {group_id}
        group = client.get(f"/groups/{group_id}").json()
        manifests = [valid_manifest(client, job_id) for job_id in job_ids]
        delivered = receiver.wait_for(1, timeout_s=60)
    assert group["status"] == "completed" and group["counts"] == {"succeeded": 3}
    assert [entry["job_id"] for entry in group["jobs"]] == job_ids
    events = [Verifier(WEBHOOK_SECRET).verify(r.body, r.headers) for r in delivered]
    assert {r.headers["webhook-id"] for r in delivered} == {delivered[0].headers["webhook-id"]}, "one event"
    assert events[0]["type"] == "group.completed" and events[0]["data"]["group_id"] == group_id
    assert [entry["status"] for entry in events[0]["data"]["jobs"]] == ["succeeded"] * 3
    # one motion, stored once: every job names the same pose source
    assert len({m["pose_source"]["sha256"] for m in manifests}) == 1
    assert len({m["inputs"]["reference_image"]["sha256"] for m in manifests}) == 3
    with contextlib.closing(redis.Redis.from_url(stack.redis.url)) as client:
        assert client.llen(job_events_key("unianimate", f"group-{group_id}")) == 1, "recorded once"
