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


def _swinging_right_arm(driving, frames: int = 5):
    """Frame 0 of the case, drifting right while the right elbow and wrist swing at constant speed.

    Every bone vector then changes linearly over time, so the stretch of each bone does too.
    """
    base = driving.select([0] * frames)
    step = np.arange(frames, dtype=float)[:, None]
    body, hands = base.body.copy(), base.hands.copy()
    body += (step * [0.01, 0.002])[:, None, :]
    hands += (step * [0.01, 0.002])[:, None, None, :]
    body[:, 3] += step * [0.004, -0.006]  # right elbow
    body[:, 4] += step * [0.010, -0.012]  # right wrist, and the right hand with it
    hands[:, 1] += (step * [0.010, -0.012])[:, None, :]
    return base.replace(body=body, hands=hands)


def test_elbow_hidden_in_a_middle_frame_does_not_throw_the_hand(align_case):
    ref, driving, _ = align_case
    seen = _swinging_right_arm(driving)
    hidden = _without(seen, 2, 3)  # right elbow not detected in frame 2 only
    full = align_to_reference(seen, ref)
    result = align_to_reference(hidden, ref)
    wrist, hand = result.sequence.body[2, 4], result.sequence.hands[2, 1]
    # The original stretches both arm bones from the (-1, -1) marker here: the wrist lands ~0.04 (20 px) away.
    np.testing.assert_allclose(wrist, full.sequence.body[2, 4], atol=1e-12)
    present = hidden.hands_present[2, 1]
    np.testing.assert_allclose(hand[present], full.sequence.hands[2, 1][present], atol=1e-12)
    # Nothing else moves: the other frames and the other points of frame 2 are the original's.
    others = [0, 1, 3, 4]
    assert np.array_equal(result.sequence.body[others], full.sequence.body[others])
    assert np.array_equal(result.sequence.hands[others], full.sequence.hands[others])
    untouched = [k for k in range(20) if k not in (3, 4)]
    assert np.array_equal(result.sequence.body[2, untouched], full.sequence.body[2, untouched])
    assert not result.sequence.body_present[2, 3]
    assert result.bone_ratios == full.bone_ratios
    assert any("arm3" in note and "frame 2" in note for note in result.fallbacks)


def test_missing_points_keep_the_originals_offsets(align_case):
    ref, driving, _ = align_case
    hidden = _without(_swinging_right_arm(driving), 2, 3)
    result = align_to_reference(hidden, ref)
    # The original moves the hidden elbow by every offset of its chain, measured from its own marker.
    x_ratio, y_ratio = result.x_ratio, result.y_ratio
    body = hidden.body[2] * [x_ratio, y_ratio]
    shoulder = body[2] + (body[2] - body[1]) * (result.bone_ratios["shoulder2"] - 1)
    elbow = body[3] + (body[2] - body[1]) * (result.bone_ratios["shoulder2"] - 1)
    elbow = elbow + (elbow - shoulder) * (result.bone_ratios["arm3"] - 1)
    np.testing.assert_allclose(result.sequence.body[2, 3], elbow + result.offset, atol=1e-12)


def test_a_hidden_ear_changes_nothing_the_original_computes(align_case):
    ref, driving, data = align_case
    # The case's left ear is missing in frames 4-5: only the ear hangs below that bone, so it is exact.
    assert not driving.body_present[4, 17] and not driving.body_present[5, 17]
    result = align_to_reference(driving, ref)
    for i, frame in enumerate(data["aligned"]):
        assert np.array_equal(result.sequence.body[i], np.array(frame["bodies"]["candidate"]))
        assert np.array_equal(result.sequence.hands[i], np.array(frame["hands"]))
    assert result.fallbacks == ()
