"""Entry points the API and the worker call."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.pose import PoseInputError, PoseSequence, detect_input_kind, load_pose_input, load_reference_pose
from tests.conftest import REPO_ROOT
from tests.model.pose.conftest import openpose_people


def test_keypoints_from_bytes_and_paths(tmp_path):
    document = json.dumps({"frames": openpose_people(2), "canvas_width": 512, "canvas_height": 768, "fps": 10})
    from_bytes = load_pose_input(document.encode())
    path = tmp_path / "pose.json"
    path.write_text(document)
    from_path = load_pose_input(path, "keypoints")
    assert isinstance(from_bytes, PoseSequence) and from_bytes.num_frames == 2 and from_bytes.fps == 10.0
    assert (from_path.body == from_bytes.body).all()


def test_kind_detection():
    assert detect_input_kind(b'  {"frames": []}') == "keypoints"
    assert detect_input_kind(b"\x89PNG\r\n\x1a\n....") == "image"
    assert detect_input_kind(b"\xff\xd8\xff\xe0....") == "image"
    assert detect_input_kind(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image"
    with pytest.raises(PoseInputError, match="name its kind"):
        detect_input_kind(b"\x00\x00\x00\x18ftypmp42")


def test_role_mistakes_are_explained(tmp_path):
    with pytest.raises(PoseInputError, match="an image is a reference"):
        load_pose_input(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(PoseInputError, match="exactly one frame"):
        load_reference_pose(json.dumps(openpose_people(2)).encode(), canvas_width=512, canvas_height=768)
    with pytest.raises(PoseInputError, match="unknown pose input kind"):
        load_pose_input(b"[]", "mocap")
    with pytest.raises(PoseInputError, match="could not read"):
        load_pose_input(tmp_path / "absent.json", "keypoints")


def test_keypoint_validation_needs_no_torch_opencv_pyav_or_onnxruntime():
    code = (
        "import sys, json\n"
        "from model.pose import load_pose_input\n"
        "load_pose_input(json.dumps([{'people': []}]).encode(), 'keypoints')\n"
        "heavy = [m for m in ('torch', 'cv2', 'av', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
