"""Properties of keypoint parsing, the API's check and the worker's parser together:
- whatever bytes arrive, the API's check answers a ready sequence or an InputError, nothing else;
- the API accepts a document exactly when the worker's parser accepts the same bytes;
- every valid sequence written by `to_pose_json` comes back with the same points.
"""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.pose.formats import parse_pose_json, to_pose_json
from model.pose.keypoints import (
    NUM_BODY_POINTS,
    NUM_FACE_POINTS,
    NUM_HAND_POINTS,
    NUM_HANDS,
    PoseInputError,
    PoseSequence,
)
from service.inputs.checks import InputError, Limits, check_keypoints, parse_json
from tests.fuzz.budget import examples

LIMITS = Limits(max_image_pixels=4096 * 4096, max_video_side=4096, max_video_frames=36_000,
                max_video_duration_s=1200.0, max_json_bytes=1 << 20, max_json_depth=16)
FAST = settings(max_examples=examples(150), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# numbers a hostile client may put anywhere a number goes
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6),
                    st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0, 3.0, 1e308, -0.0]))
anything = st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=4), max_leaves=20)
# a keypoint list of plausible length whose entries are mostly numbers
keypoint_list = st.lists(st.one_of(numbers, numbers, numbers, anything), min_size=0, max_size=80) | st.builds(
    lambda n, v: [v] * n, st.sampled_from([54, 75, 63, 204, 210, 53]), numbers)
person = st.fixed_dictionaries({}, optional={
    "pose_keypoints_2d": keypoint_list, "hand_left_keypoints_2d": keypoint_list,
    "hand_right_keypoints_2d": keypoint_list, "face_keypoints_2d": keypoint_list, "extra": anything})
openpose_frame = st.fixed_dictionaries({"people": st.lists(person, max_size=3) | anything})
point_rows = st.lists(st.lists(numbers, min_size=2, max_size=2) | anything, max_size=22)
dwpose_frame = st.fixed_dictionaries(
    {"bodies": st.fixed_dictionaries({"candidate": point_rows, "subset": st.lists(st.lists(numbers, max_size=21),
                                                                                  max_size=2)}) | anything},
    optional={"hands": st.lists(point_rows, max_size=3) | anything, "faces": st.lists(point_rows, max_size=2)})
frame = st.one_of(openpose_frame, dwpose_frame, anything)
document = st.one_of(
    st.lists(frame, max_size=4),
    st.fixed_dictionaries({"frames": st.lists(frame, max_size=4) | anything},
                          optional={"fps": numbers | anything, "canvas_width": numbers, "canvas_height": numbers}),
    frame,
)


def _json_bytes(value) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def _api_verdict(tmp_path, data: bytes):
    path = tmp_path / "keypoints.json"
    path.write_bytes(data)
    try:
        return check_keypoints("pose_keypoints", path, LIMITS).info
    except InputError as exc:
        assert exc.field == "pose_keypoints" and str(exc).startswith("pose_keypoints: ")
        return None


def _worker_verdict(data: bytes):
    try:
        return parse_pose_json(data).num_frames
    except PoseInputError:
        return None


@FAST
@given(doc=st.one_of(document, st.deferred(lambda: near_valid_documents())))
def test_api_accepts_exactly_what_the_worker_accepts(tmp_path, doc):
    data = _json_bytes(doc)
    api, worker = _api_verdict(tmp_path, data), _worker_verdict(data)
    assert (api is None) == (worker is None), (api, worker)
    if api is not None:
        assert api["frames"] == worker


@FAST
@given(data=st.binary(max_size=300) | document.map(_json_bytes).flatmap(
    lambda raw: st.tuples(st.just(raw), st.integers(0, max(0, len(raw) - 1)), st.binary(max_size=3)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])))
def test_any_bytes_are_a_sequence_or_an_input_error(tmp_path, data):
    """Random and corrupted bytes (truncated, spliced): never an exception other than InputError."""
    _api_verdict(tmp_path, data)


@FAST
@given(depth=st.integers(1, 40) | st.integers(1, 3000), wrap=st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
def test_nesting_is_limited_without_recursion_errors(depth, wrap):
    data = wrap[0] * depth + b"1" + wrap[1] * depth
    try:
        parse_json("params", data, 16)
        assert depth <= 16
    except InputError as exc:
        assert depth > 16 and "nested deeper than 16" in str(exc)


@st.composite
def sequences(draw) -> PoseSequence:
    frames = draw(st.integers(1, 4))

    def array(*shape):
        return draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.99, 1.99)))

    def mask(*shape):
        return draw(hnp.arrays(np.bool_, shape))

    return PoseSequence(body=array(frames, NUM_BODY_POINTS, 2), body_present=mask(frames, NUM_BODY_POINTS),
                        hands=array(frames, NUM_HANDS, NUM_HAND_POINTS, 2),
                        hands_present=mask(frames, NUM_HANDS, NUM_HAND_POINTS),
                        face=array(frames, NUM_FACE_POINTS, 2), face_present=mask(frames, NUM_FACE_POINTS),
                        canvas_width=draw(st.integers(1, 8192)), canvas_height=draw(st.integers(1, 8192)),
                        fps=draw(st.none() | st.floats(0.5, 240)))


def openpose_document(sequence: PoseSequence) -> dict:
    """The sequence as OpenPose per-frame people (normalised coordinates, confidence 0.9 or 0)."""
    def flat(points, present):
        return [v for (x, y), seen in zip(points.tolist(), present.tolist(), strict=True)
                for v in (x, y, 0.9 if seen else 0.0)]
    frames = [{"people": [{"pose_keypoints_2d": flat(sequence.body[i, :18], sequence.body_present[i, :18]),
                           "hand_left_keypoints_2d": flat(sequence.hands[i, 0], sequence.hands_present[i, 0]),
                           "hand_right_keypoints_2d": flat(sequence.hands[i, 1], sequence.hands_present[i, 1]),
                           "face_keypoints_2d": flat(sequence.face[i], sequence.face_present[i])}]}
              for i in range(sequence.num_frames)]
    return {"fps": sequence.fps or 8, "frames": frames}


@st.composite
def near_valid_documents(draw):
    """A valid document (DWPose or OpenPose) with one to three things changed: a value replaced by
    anything, a key or list item dropped, a list cut short or repeated."""
    sequence = draw(sequences())
    doc = json.loads(json.dumps(draw(st.sampled_from([to_pose_json, openpose_document]))(sequence)))
    for _ in range(draw(st.integers(1, 3))):
        parent, key = None, None
        node = doc
        while isinstance(node, dict | list) and node and draw(st.integers(0, 5)):  # walk down at random
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "replace", "drop", "cut", "repeat"]))
        if action == "replace":
            parent[key] = draw(anything)
        elif action == "drop":
            del parent[key]
        elif isinstance(node, list) and node:
            parent[key] = node[: draw(st.integers(0, len(node) - 1))] if action == "cut" else node + node[:1]
    return doc


@FAST
@given(sequence=sequences())
def test_valid_sequences_pass_the_api_and_come_back_unchanged(tmp_path, sequence):
    data = _json_bytes(to_pose_json(sequence))
    info = _api_verdict(tmp_path, data)
    assert info == {"frames": sequence.num_frames, "fps": sequence.fps}
    back = parse_pose_json(data)
    for name in ("body_present", "hands_present", "face_present"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sequence, name))
    body_seen = sequence.body_present[..., None]
    np.testing.assert_array_equal(np.where(body_seen, back.body, 0), np.where(body_seen, sequence.body, 0))
    hands_seen = sequence.hands_present[..., None]
    np.testing.assert_array_equal(np.where(hands_seen, back.hands, 0), np.where(hands_seen, sequence.hands, 0))
