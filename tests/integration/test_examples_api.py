"""examples/ through the real API: OpenPose pixels with no canvas and no fps (the rate as a param,
the canvas defaulted), and the DWPose layout. The output keeps the reference photo's aspect ratio."""
from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from tests.integration.stack import wait_for_status
from tests.test_examples import EXAMPLES

pytestmark = pytest.mark.integration

FPS = 15


def example_upload(motion: str, params: dict) -> dict:
    files = {
        "reference_image": ("person.png", (EXAMPLES / "person.png").read_bytes(), "image/png"),
        "reference_keypoints": ("person_keypoints.json", (EXAMPLES / "person_keypoints.json").read_bytes(),
                                "application/json"),
        "pose_keypoints": (motion, (EXAMPLES / motion).read_bytes(), "application/json"),
    }
    return {"files": files, "data": {"params": json.dumps(params)}}


def test_openpose_pixels_without_canvas_or_fps_render(stack):
    # Only the height: the width follows the photo. A second of the dance keeps the render small.
    params = {"fps": FPS, "height": 192, "steps": 2, "seed": 1, "segment_frames": 8, "max_duration_s": 1}
    with stack.client() as client:
        response = client.post("/animate", **example_upload("dance_openpose.json", params))
        assert response.status_code == 202, response.text
        job = wait_for_status(client, response.json()["job_id"], {"succeeded", "failed", "canceled"})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    with Image.open(EXAMPLES / "person.png") as photo:
        photo_width, photo_height = photo.size
    assert result["height"] == params["height"]
    assert result["width"] * photo_height == result["height"] * photo_width  # the photo's aspect, exactly
    assert (result["frames"], result["fps"]) == (math.floor(params["max_duration_s"] * FPS), FPS)


@pytest.mark.parametrize("motion", ["dance_openpose.json", "dance_dwpose.json"])
def test_preflight_reads_every_example_motion(stack, motion):
    frames = len(json.loads((EXAMPLES / motion).read_text()))
    with stack.client() as client:
        response = client.post("/animate/preflight", **example_upload(motion, {"fps": FPS}))
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["pose"]["frames"], report["pose"]["output_fps"]) == (frames, FPS)
    assert report["pose"]["warnings"] == []  # an 18-point body without hands or face: nothing it could miss


def test_without_fps_the_problem_names_the_param(stack):
    with stack.client() as client:
        response = client.post("/animate", **example_upload("dance_openpose.json", {"height": 192}))
    assert response.status_code == 422, response.text
    assert "params.fps" in response.text
