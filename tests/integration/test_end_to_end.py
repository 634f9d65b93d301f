"""The service end to end: real API, workers, Redis and SeaweedFS, the tiny model."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
from standardwebhooks import Webhook as Verifier

from scripts.demo import demo_keypoints, demo_reference_image, demo_reference_keypoints
from tests.integration.stack import KEY_B, SMALL, WEBHOOK_SECRET, wait_for_status
from tests.worker.receiver import webhook_receiver

pytestmark = pytest.mark.integration


def upload(seconds: float = 1.0, fps: int = 15, params: dict | None = None, **fields) -> dict:
    files = {
        "reference_image": ("reference.png", demo_reference_image(128, 192), "image/png"),
        "reference_keypoints": ("reference.json", json.dumps(demo_reference_keypoints()), "application/json"),
        "pose_keypoints": ("motion.json", json.dumps(demo_keypoints(seconds, fps)), "application/json"),
    }
    return {"files": files, "data": {"params": json.dumps({**SMALL, **(params or {})}), **fields}}


def submit(client, **kwargs) -> str:
    response = client.post("/animate", **upload(**kwargs))
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def video_frames(data: bytes, tmp_path: Path) -> tuple[int, float]:
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
        return frames, float(stream.average_rate)


def test_multipart_job_renders_an_mp4_with_every_frame(stack, tmp_path):
    with stack.client() as client:
        job_id = submit(client, seconds=2.0, fps=15)
        job = wait_for_status(client, job_id, {"succeeded", "failed", "canceled"})
        assert job["status"] == "succeeded", job["error"]
        assert job["model"] == {"name": "untrained tiny (random weights)", "untrained": True}
        result = job["result"]
        assert (result["frames"], result["fps"], result["width"], result["height"]) == (30, 15.0, 64, 64)
        assert result["duration_s"] == pytest.approx(2.0)
        assert [(s["index"], s["attempts"], s["done"]) for s in job["segments"]] == [
            (k, 1, True) for k in range(5)]
        video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
    assert video.status_code == 200
    assert hashlib.sha256(video.content).hexdigest() == result["sha256"] and len(video.content) == result["size_bytes"]
    assert video_frames(video.content, tmp_path) == (30, 15.0)


@contextlib.contextmanager
def file_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_json_submission_with_input_urls(stack, tmp_path):
    (tmp_path / "ref.png").write_bytes(demo_reference_image(128, 192))
    (tmp_path / "ref.json").write_text(json.dumps(demo_reference_keypoints()))
    (tmp_path / "motion.json").write_text(json.dumps(demo_keypoints(1.0, 10)))
    with file_server(tmp_path) as base, stack.client() as client:
        response = client.post("/animate", json={
            "reference_image_url": f"{base}/ref.png", "reference_keypoints_url": f"{base}/ref.json",
            "pose_keypoints_url": f"{base}/motion.json", "params": SMALL})
        assert response.status_code == 202, response.text
        job = wait_for_status(client, response.json()["job_id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert (job["result"]["frames"], job["result"]["fps"]) == (10, 10.0)


def read_sse(client, job_id: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", f"/jobs/{job_id}/events", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_events_stream_to_the_terminal_state(stack):
    with stack.client() as client:
        job_id = submit(client, seconds=1.0)
        events = read_sse(client, job_id)
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [data for name, data in events if name == "progress"]
    assert progress and progress[-1]["frames_done"] == progress[-1]["frames_total"] == 15
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [data["index"] for name, data in events if name == "segment"] == [0, 1]


def test_a_signed_webhook_arrives_after_one_failed_delivery(stack):
    with webhook_receiver([500]) as receiver, stack.client() as client:
        job_id = submit(client, seconds=1.0, webhook_url=receiver.url, webhook_events="job.succeeded")
        wait_for_status(client, job_id, {"succeeded"})
        first, second = receiver.wait_for(2, timeout_s=60)[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body, "a retry resends the same bytes"
    payload = Verifier(WEBHOOK_SECRET).verify(second.body, second.headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job_id and payload["data"]["result"]["frames"] == 15


def test_cancel_a_running_job(stack):
    with stack.client() as client:
        job_id = submit(client, seconds=6.0, params={"steps": 6})
        wait_for_status(client, job_id, {"running"})
        response = client.post(f"/jobs/{job_id}/cancel")
        assert response.status_code == 202
        job = wait_for_status(client, job_id, {"succeeded", "failed", "canceled"})
    assert job["status"] == "canceled" and job["result"] is None
    assert job["progress"]["frames_done"] < 90


def test_idempotent_resubmission_gives_the_same_job(stack):
    body = upload(seconds=1.0)
    with stack.client() as client:
        first = client.post("/animate", headers={"Idempotency-Key": "demo-request-1"}, **body)
        again = client.post("/animate", headers={"Idempotency-Key": "demo-request-1"}, **body)
        assert first.status_code == again.status_code == 202
        assert first.json()["job_id"] == again.json()["job_id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        wait_for_status(client, first.json()["job_id"], {"succeeded"})


def test_jobs_belong_to_the_key_that_made_them(stack):
    with stack.client() as alice, stack.client(KEY_B) as bob, stack.client(None) as nobody:
        assert nobody.post("/animate", **upload()).status_code == 401
        job_id = submit(alice, seconds=1.0)
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/video", f"/jobs/{job_id}/events"):
            assert bob.get(path).status_code == 404
        assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404
        assert wait_for_status(alice, job_id, {"succeeded"})["status"] == "succeeded"
