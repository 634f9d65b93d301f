"""Keypoint JSON: every accepted form, and every rejection naming frame and field."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.pose.formats import parse_pose_json, to_pose_json
from model.pose.keypoints import MAX_FRAMES, MAX_PEOPLE_PER_FRAME, PoseInputError, PoseSequence
from tests.model.pose.conftest import openpose_people


def test_openpose_pixels_in_object_form():
    document = {"frames": openpose_people(2), "canvas_width": 512, "canvas_height": 768, "fps": 24}
    seq = parse_pose_json(json.dumps(document).encode())
    assert (seq.num_frames, seq.canvas_width, seq.canvas_height, seq.fps) == (2, 512, 768, 24.0)
    assert seq.body[0, 1].tolist() == [256 / 512, 230 / 768]  # neck
    assert seq.body[1, 1, 0] == pytest.approx(261 / 512)
    assert seq.body_present[0, :18].all() and not seq.body_present[0, 18:].any()  # 18-point body: no toes
    assert seq.hands[0, 0, 0].tolist() == [330 / 512, 400 / 768]  # hand_left -> hands[0]
    assert seq.hands[0, 1, 0].tolist() == [180 / 512, 400 / 768]
    assert seq.face_present[0].all()


def test_openpose_list_form_with_canvas_from_caller_and_normalised_input():
    pixels = parse_pose_json(openpose_people(1), canvas_width=512, canvas_height=768)
    normalised_frames = openpose_people(1)
    for key in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"):
        values = np.array(normalised_frames[0]["people"][0][key]).reshape(-1, 3)
        values[:, :2] /= [512, 768]
        normalised_frames[0]["people"][0][key] = values.ravel().tolist()
    normalised = parse_pose_json(normalised_frames)
    np.testing.assert_allclose(normalised.body, pixels.body, atol=1e-12)
    np.testing.assert_allclose(normalised.hands, pixels.hands, atol=1e-12)


def test_openpose_single_frame_with_its_own_canvas():
    frame = {"people": openpose_people(1)[0]["people"], "canvas_width": 512, "canvas_height": 768}
    seq = parse_pose_json(frame)
    assert seq.num_frames == 1 and seq.body[0, 0].tolist() == [0.5, 150 / 768]


def test_low_confidence_points_are_missing():
    frames = openpose_people(1)
    body = frames[0]["people"][0]["pose_keypoints_2d"]
    body[3 * 4 + 2] = 0.2  # right wrist confidence below 0.3
    seq = parse_pose_json(frames, canvas_width=512, canvas_height=768)
    assert not seq.body_present[0, 4] and seq.body[0, 4].tolist() == [-1.0, -1.0]
    assert seq.body_present[0, 3]


def test_body25_maps_hips_and_toes():
    body25 = np.zeros((25, 3))
    body25[:, 2] = 1.0
    body25[:, 0] = np.arange(25) * 10.0
    body25[:, 1] = 100.0
    frames = [{"people": [{"pose_keypoints_2d": body25.ravel().tolist()}]}]
    seq = parse_pose_json(frames, canvas_width=1000, canvas_height=1000)
    assert seq.body[0, 8, 0] == pytest.approx(0.09)  # right hip = BODY_25 point 9, not the mid-hip (8)
    assert seq.body[0, 17, 0] == pytest.approx(0.18)  # left ear = BODY_25 point 18
    assert seq.body[0, 18, 0] == pytest.approx(0.195)  # left toes = midpoint of 19 and 20
    assert seq.body[0, 19, 0] == pytest.approx(0.225)  # right toes = midpoint of 22 and 23
    assert seq.body_present[0].all()


def test_seventy_point_face_drops_pupils():
    frames = openpose_people(1)
    frames[0]["people"][0]["face_keypoints_2d"] += [10.0, 10.0, 1.0, 12.0, 10.0, 1.0]
    seq = parse_pose_json(frames, canvas_width=512, canvas_height=768)
    assert seq.face_present[0].sum() == 68


def test_dwpose_layout_as_the_original_produces_it(draw_case):
    seq, data = draw_case
    assert seq.body_present[0].tolist() == [k != 17 for k in range(20)]  # case 1: left ear missing
    np.testing.assert_array_equal(seq.body[0], np.array(data["bodies"]["candidate"]))
    assert not seq.face_present[0, 0] and not seq.face_present[0, 16] and seq.face_present[0].sum() == 66


def test_round_trip_through_the_dwpose_layout(draw_case):
    seq = draw_case[0].replace(fps=12.5)
    again = parse_pose_json(json.dumps(to_pose_json(seq)))
    for name in ("body", "body_present", "hands", "hands_present", "face", "face_present"):
        np.testing.assert_array_equal(getattr(again, name), getattr(seq, name))
    assert again.fps == 12.5


def test_the_sequence_is_immutable(draw_case):
    with pytest.raises(ValueError):
        draw_case[0].body[0, 0, 0] = 0.5
    with pytest.raises(AttributeError):
        draw_case[0].fps = 3


def _with_body_value(index: int, value) -> list:
    frames = openpose_people(3)
    frames[2]["people"][0]["pose_keypoints_2d"][index] = value
    return frames


@pytest.mark.parametrize(
    ("document", "kwargs", "expected"),
    [
        ([], {}, "empty"),
        ({"frames": []}, {}, "empty"),
        ("{not json", {}, "not valid JSON"),
        ('{"fps": ' + "9" * 5000 + ', "frames": []}', {}, "number that cannot be read"),
        ("42", {}, "list of frames"),
        ({"frames": {}}, {}, "'frames' must be a list"),
        ([{"nobody": 1}], {}, "frame 0: needs 'people'"),
        (["x"], {}, "frame 0: expected an object"),
        ('[{"people": [{"pose_keypoints_2d": [NaN, 1, 1]}]}]', {}, "NaN or infinity"),
        (_with_body_value(6, float("inf")), {"canvas_width": 512, "canvas_height": 768}, "frame 2: people[0].pose_keypoints_2d"),
        (_with_body_value(5, -0.5), {"canvas_width": 512, "canvas_height": 768}, "confidence -0.5"),
        (_with_body_value(4, 99999.0), {"canvas_width": 512, "canvas_height": 768}, "frame 2: people[0].pose_keypoints_2d point 1"),
        (_with_body_value(4, "12"), {"canvas_width": 512, "canvas_height": 768}, "must hold only numbers"),
        (_with_body_value(4, True), {"canvas_width": 512, "canvas_height": 768}, "must hold only numbers"),
        ([{"people": [{"pose_keypoints_2d": [1.0] * 50}]}], {}, "not a multiple of 3"),
        ([{"people": [{"pose_keypoints_2d": [0.5, 0.5, 1.0] * 17}]}], {}, "expected 18 (COCO) or 25"),
        ([{"people": [{"pose_keypoints_2d": [0.5, 0.5, 1.0] * 18, "hand_left_keypoints_2d": [0.5] * 60}]}], {}, "expected 21"),
        ([{"people": [{"pose_keypoints_2d": [0.5, 0.5, 1.0] * 18, "face_keypoints_2d": [0.5] * 30}]}], {}, "expected 68"),
        ([{"people": [{"hand_left_keypoints_2d": []}]}], {}, "no 'pose_keypoints_2d'"),
        ([{"people": [{}] * (MAX_PEOPLE_PER_FRAME + 1)}], {}, f"at most {MAX_PEOPLE_PER_FRAME}"),
        (openpose_people(1), {}, "no canvas size is known"),
        (openpose_people(1), {"canvas_width": 9000, "canvas_height": 768}, "canvas_width must be"),
        (openpose_people(1), {"canvas_width": 512}, "both canvas_width and canvas_height"),
        ({"frames": openpose_people(1), "canvas_width": 512, "canvas_height": 768}, {"canvas_width": 600}, "given differently"),
        ({"frames": openpose_people(1), "fps": -3}, {"coordinates": "normalized"}, "fps must be"),
        (openpose_people(1) + [{"bodies": {}}], {"canvas_width": 512, "canvas_height": 768}, "mix the OpenPose"),
        ([{"bodies": {"candidate": [[0.5, 0.5]]}}], {}, "'candidate' and 'subset'"),
        ([{"bodies": {"candidate": [[0.5, 0.5, 0.1]], "subset": [[0] * 20]}}], {}, "[x, y] pairs"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[0] * 19]}}], {}, "rows of 18 or 20"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[3] + [-1] * 19]}}], {}, "bodies.subset[0][0] = 3"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[-1] * 20]}, "hands": [[[0.5, 0.5]] * 21]}], {}, "frame 0: 'hands' holds 1 hands; expected 2"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[-1] * 20] * 2}, "hands": [[[0.5, 0.5]] * 21] * 3}], {}, "2 per person of bodies.subset (4 here"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[-1] * 20] * (MAX_PEOPLE_PER_FRAME + 1)}}], {}, f"frame 0: {MAX_PEOPLE_PER_FRAME + 1} people; at most {MAX_PEOPLE_PER_FRAME}"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[-1] * 20]}, "faces": [[[0.5, 0.5]] * 68] * (MAX_PEOPLE_PER_FRAME + 1)}], {}, f"frame 0: {MAX_PEOPLE_PER_FRAME + 1} faces; at most {MAX_PEOPLE_PER_FRAME}"),
        ([{"bodies": {"candidate": [[0.5, 0.5]], "subset": [[-1] * 20]}, "hands": [[[0.5, 0.5]] * 20] * 2}], {}, "21 [x, y] points"),
        ([{"bodies": {"candidate": [[7.5, 0.5]], "subset": [[0] + [-1] * 19]}}], {}, "far outside the canvas"),
    ],
)
def test_rejections_say_what_to_fix(document, kwargs, expected):
    with pytest.raises(PoseInputError) as error:
        parse_pose_json(document, **kwargs)
    assert expected in str(error.value)


def test_too_many_frames():
    with pytest.raises(PoseInputError, match=f"at most {MAX_FRAMES}"):
        parse_pose_json([{"people": []}] * (MAX_FRAMES + 1))


def test_frames_without_people_are_empty_not_errors():
    seq = parse_pose_json([{"people": []}, openpose_people(1)[0]], canvas_width=512, canvas_height=768)
    assert not seq.body_present[0].any() and seq.body_present[1, :18].all()


def test_sequence_checks_its_own_arrays():
    with pytest.raises(PoseInputError, match="shape"):
        PoseSequence(np.zeros((1, 18, 2)), np.zeros((1, 18), bool), np.zeros((1, 2, 21, 2)),
                     np.zeros((1, 2, 21), bool), np.zeros((1, 68, 2)), np.zeros((1, 68), bool), 512, 768)
    body = np.zeros((2, 20, 2))
    body[1, 3, 0] = np.nan
    with pytest.raises(PoseInputError, match="frame 1: body holds NaN"):
        PoseSequence(body, np.zeros((2, 20), bool), np.zeros((2, 2, 21, 2)), np.zeros((2, 2, 21), bool),
                     np.zeros((2, 68, 2)), np.zeros((2, 68), bool), 512, 768)


def test_same_canvas_given_as_int_and_float_agrees():
    document = {"frames": openpose_people(1), "canvas_width": 512.0, "canvas_height": 768}
    seq = parse_pose_json(document, canvas_width=512, canvas_height=768)
    assert (seq.canvas_width, seq.canvas_height) == (512, 768)
    frames = openpose_people(2)
    frames[0]["canvas_width"], frames[1]["canvas_width"] = 512, 640
    with pytest.raises(PoseInputError, match="frames disagree on canvas_width"):
        parse_pose_json(frames, canvas_height=768)


def test_dwpose_caps_allow_the_limit_itself():
    people = MAX_PEOPLE_PER_FRAME
    frame = {"bodies": {"candidate": [[0.5, 0.5]], "subset": [[0] + [-1] * 19] * people},
             "faces": [[[0.25, 0.75]] * 68] * people}
    seq = parse_pose_json([frame])
    assert seq.body_present[0, 0] and seq.face[0, 0].tolist() == [0.25, 0.75]


def test_multi_person_dwpose_takes_the_first_persons_two_hands():
    # As the detector stacks them for 3 people: left hands of persons 0, 1, 2, then their right hands.
    hands = [[[0.1 * (row + 1), 0.5]] * 21 for row in range(6)]
    frame = {"bodies": {"candidate": [[0.5, 0.5]], "subset": [[0] + [-1] * 19] * 3}, "hands": hands}
    seq = parse_pose_json([frame])
    np.testing.assert_allclose(seq.hands[0, 0, :, 0], 0.1)  # row 0: person 0's left hand
    np.testing.assert_allclose(seq.hands[0, 1, :, 0], 0.4)  # row 3: person 0's right hand
    assert seq.hands_present[0].all()


@pytest.mark.parametrize("as_text", [False, True])
def test_utf8_byte_order_mark_is_accepted(as_text):
    document = json.dumps({"frames": openpose_people(1), "canvas_width": 512, "canvas_height": 768})
    with_bom = "\ufeff" + document if as_text else b"\xef\xbb\xbf" + document.encode()
    seq = parse_pose_json(with_bom)
    assert seq.body[0, 1].tolist() == [256 / 512, 230 / 768]


def test_utf8_byte_order_mark_in_a_file_is_recognised_as_keypoints(tmp_path):
    from model.pose.inputs import detect_input_kind, load_pose_input

    path = tmp_path / "poses.json"
    document = {"frames": openpose_people(2), "canvas_width": 512, "canvas_height": 768, "fps": 10}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    assert detect_input_kind(path) == "keypoints"
    assert load_pose_input(path).num_frames == 2
