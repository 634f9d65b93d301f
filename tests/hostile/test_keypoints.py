"""Keypoint JSON the worker could not use is refused at submission, naming the frame and field."""
import json

import pytest

from tests.hostile import payloads
from tests.hostile.checks import assert_refused
from tests.support.media import png_bytes

BODY = [0.5, 0.5, 0.9] * 18
CASES = {
    "NaN": (b'{"fps": 8, "frames": [{"people": [{"pose_keypoints_2d": [NaN, 0.5, 0.9]}]}]}', "NaN is not valid JSON"),
    "Infinity": (b'{"fps": Infinity, "frames": []}', "Infinity is not valid JSON"),
    "1e999 (parses as inf)": (b'{"fps": 8, "frames": [{"people": [{"pose_keypoints_2d": [1e999]}]}]}', "finite"),
    "nested 100000 deep": (payloads.nested_json(100_000), "nested deeper"),
    "nested 17 deep": (payloads.nested_json(17), "nested deeper than 16"),
    "6.3 MB of empty objects": (payloads.many_empty_objects(6_300_000), "JSON objects and arrays; at most"),
    "30000 frames": (payloads.openpose_frames(30_000), "at most 20000"),
    "empty list": (b"[]", "empty"),
    "empty frames list": (b'{"fps": 8, "frames": []}', "empty"),
    "an empty frame": (b'{"fps": 8, "frames": [{}]}', "frame 0: needs 'people'"),
    "frames not a list": (b'{"fps": 8, "frames": {"0": {}}}', "'frames' must be a list"),
    "a frame that is a number": (b'{"fps": 8, "frames": [{"people": []}, 7]}', "frame 1: expected an object"),
    "numbers as strings": (payloads.openpose_frames(2, points=["0.5", "0.5", "0.9"] * 18), "frame 0: people[0]"),
    "booleans as numbers": (payloads.openpose_frames(1, points=[True, True, True] * 18), "only numbers"),
    "17 body points": (payloads.openpose_frames(1, points=[0.5, 0.5, 0.9] * 17), "has 17 points"),
    "not a multiple of 3": (payloads.openpose_frames(1, points=[0.5] * 53), "not a multiple of 3"),
    "negative confidence": (payloads.openpose_frames(1, points=[0.5, 0.5, -0.9] * 18), "confidence"),
    # pixels with no canvas are fine (alignment cancels the canvas out); off a canvas the file states is not
    "a point far off the canvas": (json.dumps({"fps": 8, "canvas_width": 64, "canvas_height": 64, "frames": [
        {"people": [{"pose_keypoints_2d": [500.0, 10.0, 0.9] * 18}]}]}).encode(), "canvas"),
    "17 people in a frame": (json.dumps({"fps": 8, "frames": [{"people": [{"pose_keypoints_2d": BODY}] * 17}]})
                             .encode(), "17 people"),
    "fps 0": (payloads.openpose_frames(1, fps=0), "fps must be a positive number"),
    "fps 1e6": (payloads.openpose_frames(1, fps=1e6), "fps must be a positive number"),
    "canvas 1e9 wide": (json.dumps({"fps": 8, "canvas_width": 10**9, "canvas_height": 10,
                                    "frames": [{"people": []}]}).encode(), "canvas_width"),
    "mixed layouts": (json.dumps({"fps": 8, "frames": [{"people": []}, {"bodies": {}}]}).encode(), "mix"),
    "invalid utf-8": (b'{"fps": 8, "frames": ["\xff\xfe"]}', "invalid JSON"),
    "a bare string": (b'"frames"', "got a JSON str"),
    "a bare number": (b"12", "got a JSON int"),
    "nothing": (b"", "invalid JSON"),
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_pose_keypoints(client, state, settings, name):
    data, words = CASES[name]
    files = {"reference_image": ("r.png", png_bytes(), "image/png"), "pose_keypoints": ("k.json", data, "text/plain")}
    body = assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir,
                          field="pose_keypoints")
    assert words in body["detail"], body["detail"]


def test_keypoints_sent_as_a_text_field_get_the_same_checks(client, state, settings):
    response = client.post("/animate", files={"reference_image": ("r.png", png_bytes(), "image/png")},
                           data={"pose_keypoints": '{"fps": 8, "frames": [{"people": [{"pose_keypoints_2d": [NaN]}]}]}'})
    assert "NaN" in assert_refused(response, state, settings.local_storage_dir, field="pose_keypoints")["detail"]


def test_keypoints_over_the_byte_limit(make_client, settings):
    client = make_client(max_json_bytes=4096)
    files = {"reference_image": ("r.png", png_bytes(), "image/png"),
             "pose_keypoints": ("k.json", payloads.openpose_frames(100), "application/json")}
    body = assert_refused(client.post("/animate", files=files), client.app.state.services, settings.local_storage_dir)
    assert "at most 4096 bytes" in body["detail"]


def test_reference_keypoints_must_be_one_frame(client, state, settings):
    files = {"reference_image": ("r.png", png_bytes(), "image/png"),
             "pose_keypoints": ("k.json", payloads.openpose_frames(3), "application/json"),
             "reference_keypoints": ("ref.json", payloads.openpose_frames(3), "application/json")}
    body = assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir,
                          field="reference_keypoints")
    assert "exactly one frame, got 3" in body["detail"]


def test_keypoints_without_a_frame_rate_need_params_fps(client, state, settings):
    """The worker cannot time such a sequence; the API says so instead of queueing a doomed job."""
    files = {"reference_image": ("r.png", png_bytes(), "image/png"),
             "pose_keypoints": ("k.json", payloads.openpose_frames(3, fps=None), "application/json")}
    body = assert_refused(client.post("/animate", files=files), state, settings.local_storage_dir,
                          field="pose_keypoints")
    assert '"fps"' in body["detail"] and "params.fps" in body["detail"]
    accepted = client.post("/animate", files=files, data={"params": '{"fps": 12}'})
    assert accepted.status_code == 202, accepted.text
