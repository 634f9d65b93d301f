"""examples/ is what scripts/make_examples.py writes, and every file in it reads as what it claims to be."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.pose.formats import parse_pose_json
from model.pose.keypoints import MissingCanvas
from scripts.make_examples import (
    DANCE_HEIGHT,
    DANCE_WIDTH,
    EXAMPLES,
    PHOTO_HEIGHT,
    PHOTO_WIDTH,
    differences,
    main,
    write_examples,
)

MAX_FOLDER_BYTES = 300 * 1024


def test_the_committed_files_are_what_the_script_writes():
    assert differences() == [], "run: .venv/bin/python scripts/make_examples.py"


def test_check_flag_reports_a_changed_file(tmp_path, capsys):
    write_examples(tmp_path)
    assert main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "dance_dwpose.json").write_text("[]\n")
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "dance_dwpose.json differs" in capsys.readouterr().err


def test_the_folder_stays_small():
    assert sum(path.stat().st_size for path in EXAMPLES.rglob("*") if path.is_file()) < MAX_FOLDER_BYTES


def test_openpose_files_are_pixels_without_canvas_or_fps():
    for name in ("person_keypoints.json", "dance_openpose.json"):
        document = json.loads((EXAMPLES / name).read_text())
        frames = document if isinstance(document, list) else [document]
        assert all(set(frame) == {"version", "people"} for frame in frames), name
        with pytest.raises(MissingCanvas):  # pixels: only a canvas (given or defaulted) makes them usable
            parse_pose_json(document)


def test_reference_keypoints_describe_the_photo():
    pose = parse_pose_json((EXAMPLES / "person_keypoints.json").read_bytes(),
                           default_canvas=(PHOTO_WIDTH, PHOTO_HEIGHT))
    assert pose.num_frames == 1 and pose.body_present[0, :18].all()
    assert ((pose.body[0, :18] > 0) & (pose.body[0, :18] < 1)).all()  # the whole person inside the photo


def test_both_dance_formats_hold_the_same_dance():
    openpose = parse_pose_json((EXAMPLES / "dance_openpose.json").read_bytes(), canvas_width=DANCE_WIDTH,
                               canvas_height=DANCE_HEIGHT)
    dwpose = parse_pose_json((EXAMPLES / "dance_dwpose.json").read_bytes())
    assert openpose.fps is None and dwpose.fps is None
    assert openpose.num_frames == dwpose.num_frames > 1
    assert np.array_equal(openpose.body_present, dwpose.body_present)
    # the files round differently (0.1 px against 4 decimals of the canvas)
    assert np.abs(openpose.body[:, :18] - dwpose.body[:, :18]).max() < 1e-3
    assert np.abs(np.diff(openpose.body[:, :18], axis=0)).max() > 0  # it moves
