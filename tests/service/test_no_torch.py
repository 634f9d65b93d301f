"""The API process must start and serve every route without torch.

A fresh interpreter gets an import hook that refuses torch, the worker package and every module of
model/ except the numpy-only keypoint parsers the API shares with the worker. It then serves real
requests (keypoint and MP4 submissions, status, cancel, SSE, metrics, the OpenAPI document) and
checks that nothing refused was even attempted: an optional `try: import torch` would hide here.
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.media import keypoints_bytes, mp4_bytes, png_bytes

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import importlib.abc, json, sys

    ALLOWED_MODEL = {"model", "model.pose", "model.pose.formats", "model.pose.keypoints",
                     "model.pose.inputs", "model.pose.sampling"}
    refused = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("torch", "torchvision", "worker") or (top == "model" and name not in ALLOWED_MODEL):
                refused.append(name)
                raise ImportError(f"{name} is refused in the API process")
            return None

    sys.meta_path.insert(0, Refuse())

    from fastapi.testclient import TestClient
    from service.api.app import create_app
    from service.settings import ApiSettings

    redis_url, storage_dir, image, poses, video = sys.argv[1:6]
    settings = ApiSettings(_env_file=None, redis_url=redis_url, storage="local", local_storage_dir=storage_dir,
                           sse_keepalive_s=0.2)
    seen = {}
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        files = lambda **f: {"reference_image": ("r.png", open(image, "rb"), "image/png"), **f}
        by_keypoints = client.post("/animate", files=files(pose_keypoints=("p.json", open(poses, "rb"))))
        by_video = client.post("/animate", files=files(pose_video=("v.mp4", open(video, "rb"), "video/mp4")))
        seen["submit"] = [by_keypoints.status_code, by_video.status_code]
        job_id = by_video.json()["job_id"]
        seen["get"] = client.get(f"/jobs/{job_id}").status_code
        canceled = client.post(f"/jobs/{job_id}/cancel")
        seen["cancel"] = [canceled.status_code, canceled.json()["status"]]
        events = client.get(f"/jobs/{job_id}/events")
        seen["events"] = [events.status_code, "canceled" in events.text]
        metrics = client.get("/metrics")
        seen["metrics"] = [metrics.status_code, "unianimate_jobs" in metrics.text]
        seen["openapi"] = client.get("/openapi.json").status_code
    import cli.api, service.storage.s3  # the other entry points load nothing refused either
    seen["refused"] = refused
    seen["torch"] = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "worker"))
    print("RESULT " + json.dumps(seen))
""")


def test_the_api_serves_every_route_without_torch(redis_url, tmp_path):
    paths = {"image": tmp_path / "r.png", "poses": tmp_path / "p.json", "video": tmp_path / "v.mp4"}
    paths["image"].write_bytes(png_bytes())
    paths["poses"].write_bytes(keypoints_bytes())
    paths["video"].write_bytes(mp4_bytes(tmp_path))
    argv = [sys.executable, "-c", CHILD, redis_url, str(tmp_path / "storage"),
            *(str(paths[k]) for k in ("image", "poses", "video"))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))
    assert seen == {"submit": [202, 202], "get": 200, "cancel": [202, "canceled"], "events": [200, True],
                    "metrics": [200, True], "openapi": 200, "refused": [], "torch": []}, seen
