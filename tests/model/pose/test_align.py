"""Alignment: the original's numbers where it is well defined, sane fallbacks where it is not."""
from __future__ import annotations

import numpy as np
import pytest

from model.pose.align import BONES, align_to_reference
from model.pose.render import draw_frame


def test_reproduces_the_original_ratios_and_keypoints(align_case):
    ref, driving, data = align_case
    result = align_to_reference(driving, ref)
    internal = data["internal_values"]
    assert result.x_ratio == pytest.approx(internal["x_ratio"], abs=1e-12)
    assert result.y_ratio == pytest.approx(internal["y_ratio"], abs=1e-12)
    for bone in BONES:
        assert result.bone_ratios[bone.name] == pytest.approx(internal[f"{bone.name}_ratio"], abs=1e-12)
    np.testing.assert_allclose(result.offset, internal["offset"], atol=1e-12)
    assert result.fallbacks == ()
    expected = np.array([f["bodies"]["candidate"] for f in data["aligned"]])
    np.testing.assert_allclose(result.sequence.body, expected, atol=1e-6)
    assert (result.sequence.canvas_width, result.sequence.fps) == (600, 30.0)


def test_frame_zero_neck_lands_on_the_reference_neck(align_case):
    ref, driving, _ = align_case
    aligned = align_to_reference(driving, ref).sequence
    np.testing.assert_allclose(aligned.body[0, 1], ref.body[0, 1], atol=1e-12)


def _without(seq, frame: int, point: int):
    present = seq.body_present.copy()
    present[frame, point] = False
    body = seq.body.copy()
    body[frame, point] = -1.0
    return seq.replace(body=body, body_present=present)


def test_missing_reference_elbow_keeps_those_bones_unstretched(align_case):
    ref, driving, _ = align_case
    result = align_to_reference(driving, _without(ref, 0, 3))  # right elbow
    assert result.bone_ratios["arm3"] == 1.0 and result.bone_ratios["arm4"] == 1.0
    assert any("arm3" in note for note in result.fallbacks)
    assert np.isfinite(result.sequence.body).all()
    # The other bones keep the original's numbers.
    full = align_to_reference(driving, ref)
    assert result.bone_ratios["arm6"] == full.bone_ratios["arm6"]


def test_missing_shoulder_in_frame_zero_falls_back_to_aspect_preserving_scales(align_case):
    ref, driving, _ = align_case
    # Without the left shoulder DWPose has no neck either: no width, no torso height, no anchor.
    result = align_to_reference(_without(_without(driving, 0, 5), 0, 1), ref)
    assert np.isfinite([result.x_ratio, result.y_ratio]).all()
    assert result.x_ratio == 1.0 and result.y_ratio == 1.0
    assert any("no global scaling" in note for note in result.fallbacks)
    assert any("neck missing" in note for note in result.fallbacks)
    assert np.isfinite(result.sequence.body).all() and np.isfinite(result.sequence.hands).all()


def test_shoulder_width_fallback_uses_torso_height_in_pixels(align_case):
    ref, driving, _ = align_case
    body = driving.body.copy()
    body[0, 2, 0] = body[0, 5, 0]  # shoulders at the same x in frame 0: the original divides by zero
    result = align_to_reference(driving.replace(body=body), ref)
    pixel_x = result.x_ratio * ref.canvas_width / driving.canvas_width
    pixel_y = result.y_ratio * ref.canvas_height / driving.canvas_height
    assert pixel_x == pytest.approx(pixel_y)  # uniform scale in pixels: the person keeps their shape
    assert any("x scale derived from torso height" in note for note in result.fallbacks)


def test_zero_length_bone_in_frame_zero(align_case):
    ref, driving, _ = align_case
    body = driving.body.copy()
    body[0, 4] = body[0, 3]  # wrist on the elbow
    result = align_to_reference(driving.replace(body=body), ref)
    assert result.bone_ratios["arm4"] == 1.0 and np.isfinite(result.sequence.body).all()


def test_missing_neck_translation_matches_shared_points(align_case):
    ref, driving, _ = align_case
    result = align_to_reference(driving, _without(ref, 0, 1))
    shared = ref.body_present[0] & driving.body_present[0]
    shared[1] = False
    np.testing.assert_allclose(
        result.sequence.body[0, shared].mean(axis=0), ref.body[0, shared].mean(axis=0), atol=1e-12
    )


def test_missing_hand_points_stay_missing_wherever_they_move(align_case):
    ref, driving, _ = align_case
    hands = driving.hands.copy()
    present = driving.hands_present.copy()
    hands[0, 1, 5] = [0.5, 0.5]  # a missing point whose coordinates will land on the canvas
    present[0, 1, 5] = False
    aligned = align_to_reference(driving.replace(hands=hands, hands_present=present), ref).sequence
    assert (aligned.hands[0, 1, 5] > 0).all()
    as_if_seen = aligned.replace(hands_present=driving.hands_present | True)
    off_canvas = aligned.hands.copy()
    off_canvas[0, 1, 5] = -1.0
    assert not np.array_equal(draw_frame(aligned, 0), draw_frame(as_if_seen, 0))
    assert np.array_equal(draw_frame(aligned, 0), draw_frame(aligned.replace(hands=off_canvas), 0))
