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

from tests.support.dance import reference_keypoints_bytes
from tests.support.media import keypoints_bytes, mp4_bytes, png_bytes

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import importlib.abc, json, sys

    ALLOWED_MODEL = {"model", "model.pose", "model.pose.formats", "model.pose.keypoints",
                     "model.pose.inputs", "model.pose.sampling",
                     # the preflight (service/preflight/) prepares the motion as the worker does and
                     # draws the aligned skeletons: numpy, cv2 and PyAV only
                     # (any of model.longvideo: torch itself stays refused, so a module of it that
                     # needed torch would fail here)
                     "model.errors", "model.frame_size", "model.motion", "model.conditions", "model.pose.align",
                     "model.pose.preflight", "model.pose.render", "model.pose.video",
                     # the memory planner the preflight's estimates share with the worker (torch-free)
                     "model.memory_plan", "model.config"}
    ALLOWED_PACKAGES = ("model.longvideo",)
    refused = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("torch", "torchvision", "worker") or (top == "model" and name not in ALLOWED_MODEL
                                                            and not name.startswith(ALLOWED_PACKAGES)):
                refused.append(name)
                raise ImportError(f"{name} is refused in the API process")
            return None

    sys.meta_path.insert(0, Refuse())

    from fastapi.testclient import TestClient
    from service.api.app import create_app
    from service.settings import ApiSettings

    redis_url, storage_dir, image, poses, video, reference = sys.argv[1:7]
    settings = ApiSettings(_env_file=None, redis_url=redis_url, storage="local", local_storage_dir=storage_dir,
                           sse_keepalive_s=0.2)
    seen = {}
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        files = lambda **f: {"reference_image": ("r.png", open(image, "rb"), "image/png"), **f}
        by_keypoints = client.post("/animate", files=files(pose_keypoints=("p.json", open(poses, "rb"))))
        by_video = client.post("/animate", files=files(pose_video=("v.mp4", open(video, "rb"), "video/mp4")))
        seen["submit"] = [by_keypoints.status_code, by_video.status_code]
        preflight = client.post("/animate/preflight", files=files(pose_keypoints=("p.json", open(poses, "rb")),
                                                                 reference_keypoints=("r.json", open(reference, "rb"))),
                                data={"params": '{"height": 64, "width": 64, "fps": 8}'})
        seen["preflight"] = [preflight.status_code, client.get(preflight.json()["preview"]["strip_url"]).status_code]
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
    paths = {"image": tmp_path / "r.png", "poses": tmp_path / "p.json", "video": tmp_path / "v.mp4",
             "reference": tmp_path / "ref.json"}
    paths["reference"].write_bytes(reference_keypoints_bytes())
    paths["image"].write_bytes(png_bytes())
    paths["poses"].write_bytes(keypoints_bytes())
    paths["video"].write_bytes(mp4_bytes(tmp_path))
    argv = [sys.executable, "-c", CHILD, redis_url, str(tmp_path / "storage"),
            *(str(paths[k]) for k in ("image", "poses", "video", "reference"))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))
    assert seen == {"submit": [202, 202], "preflight": [200, 200], "get": 200, "cancel": [202, "canceled"], "events": [200, True],
                    "metrics": [200, True], "openapi": 200, "refused": [], "torch": []}, seen
