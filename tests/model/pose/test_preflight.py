"""Preflight report and previews."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.pose.align import align_to_reference
from model.pose.preflight import PREVIEW_HEIGHT, PREVIEW_WIDTH, preflight, preview_frames, preview_strip
from model.pose.video import load_skeleton_video
from tests.model.pose.conftest import encode_video, numbered_frames


def test_report_on_the_alignment_case(align_case):
    ref, driving, data = align_case
    report = preflight(driving, ref)
    assert (report.num_frames, report.fps, report.duration_s) == (8, 30.0, 8 / 30)
    assert report.source_size == (720, 1280) and report.has_keypoints
    missing = {entry["frame"]: entry for entry in report.missing_per_frame}
    assert missing[4]["body"] == ["left ear"] and missing[5]["body"] == ["left ear"]
    assert missing[6]["right hand"] == 8  # ring and pinky gone
    assert missing[0]["left hand"] == 1
    assert report.missing_fraction["left ear"] == 0.25
    assert report.proportions.x_ratio == data["internal_values"]["x_ratio"]
    assert report.proportions.bone_ratios["right shoulder-right elbow"] == data["internal_values"]["arm3_ratio"]
    assert "left ear is missing in 25% of frames" in report.warnings
    # The reference is narrower for its height than the driving person: alignment squashes by 0.61.
    assert report.proportions.squash == pytest.approx(0.609, abs=1e-3)
    assert any("squashed" in w for w in report.warnings)
    json.dumps(report.to_dict())  # the API returns it as JSON


def test_warnings_for_mirrored_and_squashed_alignment(align_case):
    ref, driving, _ = align_case
    body = driving.body.copy()
    body[:, [2, 5]] = body[:, [5, 2]]  # swap the shoulders: the person faces the other way
    report = preflight(driving.replace(body=body), ref)
    assert any("mirrors every frame" in w for w in report.warnings)
    proportional_ref = ref.replace(canvas_width=985)  # same normalised pose in a wider image
    assert not any("squashed" in w for w in preflight(driving, proportional_ref).warnings)


def test_frames_without_a_person(align_case):
    _, driving, _ = align_case
    present = driving.body_present.copy()
    present[3] = False
    report = preflight(driving.replace(body_present=present))
    assert report.frames_without_person == [3] and report.proportions is None


def test_skeleton_video_report(tmp_path):
    path = tmp_path / "square.mp4"
    encode_video(path, numbered_frames(4, 64, 64), 8)
    report = preflight(load_skeleton_video(path, 1))
    assert not report.has_keypoints and report.num_frames == 4 and report.duration_s == 0.5
    assert any("not 2:3" in w for w in report.warnings)


def test_strip_and_preview_frames_show_the_aligned_skeleton(align_case):
    ref, driving, _ = align_case
    aligned = align_to_reference(driving, ref).sequence
    strip = preview_strip(aligned, ref, count=4)
    assert strip.shape == (PREVIEW_HEIGHT, 5 * PREVIEW_WIDTH + 4 * 4, 3)
    assert strip[:, :PREVIEW_WIDTH].any() and strip[:, -PREVIEW_WIDTH:].any()
    frames = list(preview_frames(aligned, ref, max_frames=3))
    assert len(frames) == 3 and frames[0].shape == (PREVIEW_HEIGHT, 2 * PREVIEW_WIDTH, 3)
    assert not np.array_equal(frames[0][:, PREVIEW_WIDTH:], frames[2][:, PREVIEW_WIDTH:])
