"""Keypoint JSON in, keypoint JSON out: OpenPose and the DWPose layout of the original.

Accepted documents (bytes, str, or already-parsed JSON):
- a list of frames, or `{"frames": [...], "canvas_width", "canvas_height", "fps"}`, or one bare frame;
- OpenPose frames `{"people": [{"pose_keypoints_2d": [x, y, c] * 18 (or BODY_25's 25),
  "hand_left_keypoints_2d": 21 * 3, "hand_right_keypoints_2d": 21 * 3, "face_keypoints_2d": 68 * 3
  (or 70 with pupils)}]}`, in pixels of the canvas or normalised to [0, 1];
- DWPose frames as `DWposeDetector.__call__` returns them: `{"bodies": {"candidate", "subset"},
  "hands", "faces"}`, always normalised.
Only the first person of a frame is used, as in the original (a multi-person DWPose frame holds every
person's left hand, then every right hand). A UTF-8 byte-order mark is accepted. Every rejection names
the frame and field.
"""
from __future__ import annotations

import codecs
import json
from typing import Any, Literal

import numpy as np

from model.pose.keypoints import (
    COORDINATE_MARGIN,
    DRAW_HEIGHT,
    DRAW_WIDTH,
    MAX_CANVAS_SIZE,
    MAX_CONFIDENCE,
    MAX_PEOPLE_PER_FRAME,
    MISSING_COORDINATE,
    NUM_BODY_POINTS,
    NUM_FACE_POINTS,
    NUM_HAND_POINTS,
    MissingCanvas,
    PoseInputError,
    PoseSequence,
    check_canvas_side,
    check_fps,
    check_frame_count,
    missing_arrays,
)

Coordinates = Literal["auto", "pixels", "normalized"]
# What to assume when the document and the caller give no canvas: a known size (a reference photo's
# own), "extent" (pixel keypoints are measured against a canvas just covering them: right whenever the
# poses are then aligned to a reference, which cancels the canvas out), or None (pixels are refused).
DefaultCanvas = tuple[int, int] | Literal["extent"] | None

# OpenPose confidence at or below which a point counts as missing (DWPose's own body threshold).
DEFAULT_MIN_CONFIDENCE = 0.3
# In "auto" mode, coordinates no larger than this are taken as normalised, anything larger as pixels.
AUTO_NORMALIZED_MAX = 1.0 + COORDINATE_MARGIN

# BODY_25 index of each of our 18 OpenPose body points (BODY_25 adds a mid-hip and feet).
_BODY25_TO_BODY18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_BODY25_LEFT_TOES = (19, 20)  # big toe, small toe -> our point 18
_BODY25_RIGHT_TOES = (22, 23)  # -> our point 19


def parse_pose_json(
    document: bytes | str | dict | list,
    *,
    canvas_width: int | None = None,
    canvas_height: int | None = None,
    fps: float | None = None,
    coordinates: Coordinates = "auto",
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    default_canvas: DefaultCanvas = None,
) -> PoseSequence:
    """Parses OpenPose or DWPose keypoint JSON into a validated `PoseSequence`.

    Canvas size and fps come from the document or from these arguments (they must agree when both
    give them). OpenPose coordinates are pixels or normalised per `coordinates`; "auto" takes values
    up to 2 as normalised. Without a canvas size `default_canvas` applies (see DefaultCanvas); failing
    that, normalised input is assumed to come from a 512x768 image and pixels raise MissingCanvas.
    """
    data = _load_json(document)
    frames, meta = _split_frames(data)
    check_frame_count(len(frames))
    canvas_width = _agree("canvas_width", meta.get("canvas_width"), canvas_width, frames)
    canvas_height = _agree("canvas_height", meta.get("canvas_height"), canvas_height, frames)
    fps = _agree("fps", meta.get("fps"), fps, [])
    canvas = None
    if canvas_width is not None or canvas_height is not None:
        if canvas_width is None or canvas_height is None:
            raise PoseInputError("give both canvas_width and canvas_height, or neither")
        canvas = (check_canvas_side("canvas_width", canvas_width), check_canvas_side("canvas_height", canvas_height))
    fps = None if fps is None else check_fps(fps)
    if canvas is None and isinstance(default_canvas, tuple):
        canvas = (check_canvas_side("canvas_width", default_canvas[0]),
                  check_canvas_side("canvas_height", default_canvas[1]))

    layouts = {_frame_layout(i, frame) for i, frame in enumerate(frames)}
    if len(layouts) > 1:
        raise PoseInputError("frames mix the OpenPose ('people') and DWPose ('bodies') layouts: use one")
    arrays = missing_arrays(len(frames))
    if layouts == {"openpose"}:
        canvas, scale = _openpose_scale(frames, canvas, coordinates, min_confidence, default_canvas == "extent")
        for i, frame in enumerate(frames):
            _fill_openpose_frame(arrays, i, frame, scale, min_confidence)
    else:
        for i, frame in enumerate(frames):
            _fill_dwpose_frame(arrays, i, frame)
    width, height = canvas or (DRAW_WIDTH, DRAW_HEIGHT)
    carries = _openpose_carries(frames) if layouts == {"openpose"} else _dwpose_carries(frames)
    return PoseSequence(**arrays, canvas_width=width, canvas_height=height, fps=fps, carries=carries)


def _load_json(document: bytes | str | dict | list) -> Any:
    if isinstance(document, (dict, list)):
        return document
    # Windows editors save UTF-8 with a byte-order mark, which json refuses.
    if isinstance(document, bytes) and document.startswith(codecs.BOM_UTF8):
        document = document[len(codecs.BOM_UTF8):]
    elif isinstance(document, str) and document.startswith("\ufeff"):
        document = document[1:]
    try:
        return json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoseInputError(f"the pose file is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits, which Python refuses to convert
        raise PoseInputError(f"the pose file has a number that cannot be read: {exc}") from None


def _split_frames(data: Any) -> tuple[list, dict]:
    if isinstance(data, list):
        return data, {}
    if not isinstance(data, dict):
        raise PoseInputError("pose JSON must be a list of frames or an object with a 'frames' list")
    if "frames" in data:
        if not isinstance(data["frames"], list):
            raise PoseInputError("'frames' must be a list of frame objects")
        return data["frames"], data
    if "people" in data or "bodies" in data:
        return [data], data  # one bare frame, e.g. a single OpenPose file
    raise PoseInputError("pose JSON object needs a 'frames' list (or be one frame with 'people' or 'bodies')")


def _agree(name: str, from_document: Any, from_caller: Any, frames: list) -> Any:
    """One value from the document (top level or, for OpenPose files, each frame) or the caller."""
    per_frame = {_comparable(f[name]): f[name] for f in frames if isinstance(f, dict) and f.get(name) is not None}
    if len(per_frame) > 1:
        raise PoseInputError(f"frames disagree on {name}: {list(per_frame.values())}")
    sources = {"the document": from_document, "the frames": next(iter(per_frame.values()), None),
               "the request": from_caller}
    given = {where: value for where, value in sources.items() if value is not None}
    if len({_comparable(v) for v in given.values()}) > 1:
        raise PoseInputError(f"{name} is given differently by {' and '.join(given)}: {list(given.values())}")
    return next(iter(given.values()), None)


def _comparable(value: Any) -> Any:
    """512 and 512.0 agree; anything unhashable or odd is compared by its text."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)


def _frame_layout(index: int, frame: Any) -> str:
    if not isinstance(frame, dict):
        raise PoseInputError(f"frame {index}: expected an object, got {type(frame).__name__}")
    if "people" in frame:
        return "openpose"
    if "bodies" in frame:
        return "dwpose"
    raise PoseInputError(f"frame {index}: needs 'people' (OpenPose) or 'bodies' (DWPose)")


# ---- OpenPose ---------------------------------------------------------------------------------


def _openpose_scale(frames: list, canvas: tuple[int, int] | None, coordinates: str, min_confidence: float,
                    extent: bool):
    """(the canvas, divisors (x, y) that turn the document's coordinates into normalised ones)."""
    if coordinates not in ("auto", "pixels", "normalized"):
        raise PoseInputError(f"coordinates must be 'auto', 'pixels' or 'normalized', got {coordinates!r}")
    largest = _largest_present_coordinate(frames, min_confidence)
    if coordinates == "auto":
        coordinates = "normalized" if largest <= AUTO_NORMALIZED_MAX else "pixels"
    if coordinates == "normalized":
        return canvas, (1.0, 1.0)
    if canvas is None and extent:
        side = min(max(1, int(np.ceil(largest))), MAX_CANVAS_SIZE)
        canvas = (side, side)  # square: x and y keep their pixel proportions
    if canvas is None:
        raise MissingCanvas(f"keypoints look like pixel coordinates (up to {largest:g}) but no canvas size is known")
    return canvas, (float(canvas[0]), float(canvas[1]))


def _largest_present_coordinate(frames: list, min_confidence: float) -> float:
    largest = 0.0
    for i, frame in enumerate(frames):
        for field, values in _first_person_fields(i, frame):
            triples = _triples(values, i, field)
            seen = triples[triples[:, 2] > min_confidence, :2]
            if seen.size:
                largest = max(largest, float(np.abs(seen).max()))
    return largest


def _first_person_fields(index: int, frame: dict) -> list[tuple[str, Any]]:
    people = frame["people"]
    if not isinstance(people, list):
        raise PoseInputError(f"frame {index}: 'people' must be a list")
    if len(people) > MAX_PEOPLE_PER_FRAME:
        raise PoseInputError(
            f"frame {index}: {len(people)} people; at most {MAX_PEOPLE_PER_FRAME} are allowed per frame"
        )
    if not people:
        return []
    person = people[0]
    if not isinstance(person, dict):
        raise PoseInputError(f"frame {index}: people[0] must be an object")
    if "pose_keypoints_2d" not in person:
        raise PoseInputError(f"frame {index}: people[0] has no 'pose_keypoints_2d'")
    fields = ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d")
    return [(f"people[0].{name}", person[name]) for name in fields if person.get(name)]


def _openpose_carries(frames: list) -> frozenset[str]:
    """Toes come only with BODY_25 bodies; hands and face only when the file has those fields."""
    carries = set()
    for frame in frames:
        person = frame["people"][0] if frame["people"] else {}
        if len(person.get("pose_keypoints_2d") or ()) == 25 * 3:
            carries.add("toes")
        if person.get("hand_left_keypoints_2d") or person.get("hand_right_keypoints_2d"):
            carries.add("hands")
        if person.get("face_keypoints_2d"):
            carries.add("face")
    return frozenset(carries)


def _triples(values: Any, index: int, field: str) -> np.ndarray:
    """A flat `[x, y, c, x, y, c, ...]` list as an `[N, 3]` float array, checked."""
    if not isinstance(values, list):
        raise PoseInputError(f"frame {index}: {field} must be a flat list of numbers [x, y, c, ...]")
    if len(values) % 3:
        raise PoseInputError(f"frame {index}: {field} has {len(values)} numbers, not a multiple of 3 (x, y, c)")
    array = _numbers(values, index, field).reshape(-1, 3)
    confidence = array[:, 2]
    bad = np.flatnonzero((confidence < 0) | (confidence > MAX_CONFIDENCE))
    if bad.size:
        raise PoseInputError(
            f"frame {index}: {field} point {bad[0]} has confidence {confidence[bad[0]]:g}; "
            f"confidences must lie in 0..{MAX_CONFIDENCE:g}"
        )
    return array


def _fill_openpose_frame(arrays: dict, index: int, frame: dict, scale, min_confidence: float) -> None:
    divisor = np.array(scale)
    for field, values in _first_person_fields(index, frame):
        triples = _triples(values, index, field)
        name = field.split(".")[1]
        points, present = triples[:, :2] / divisor, triples[:, 2] > min_confidence
        if name == "pose_keypoints_2d":
            points, present = _body_points(points, present, index, field)
            _put(arrays["body"][index], arrays["body_present"][index], points, present, index, field)
        elif name == "face_keypoints_2d":
            if len(triples) not in (NUM_FACE_POINTS, NUM_FACE_POINTS + 2):
                raise PoseInputError(
                    f"frame {index}: {field} has {len(triples)} points; expected 68 (or 70 with pupils)"
                )
            face = slice(0, NUM_FACE_POINTS)  # the two pupils of OpenPose's 70-point face are not drawn
            _put(arrays["face"][index], arrays["face_present"][index], points[face], present[face], index, field)
        else:
            if len(triples) != NUM_HAND_POINTS:
                raise PoseInputError(f"frame {index}: {field} has {len(triples)} points; expected 21")
            hand = 0 if name == "hand_left_keypoints_2d" else 1
            _put(arrays["hands"][index, hand], arrays["hands_present"][index, hand], points, present, index, field)


def _body_points(points: np.ndarray, present: np.ndarray, index: int, field: str):
    """18-point (COCO) or 25-point (BODY_25) OpenPose bodies in our 20-point order."""
    if len(points) == 18:
        out = np.full((NUM_BODY_POINTS, 2), MISSING_COORDINATE)
        out[:18] = points
        return out, np.concatenate([present, [False, False]])
    if len(points) != 25:
        raise PoseInputError(f"frame {index}: {field} has {len(points)} points; expected 18 (COCO) or 25 (BODY_25)")
    out = np.full((NUM_BODY_POINTS, 2), MISSING_COORDINATE)
    out_present = np.zeros(NUM_BODY_POINTS, bool)
    out[:18], out_present[:18] = points[list(_BODY25_TO_BODY18)], present[list(_BODY25_TO_BODY18)]
    for target, toes in ((18, _BODY25_LEFT_TOES), (19, _BODY25_RIGHT_TOES)):
        if present[list(toes)].all():  # the original's toe point: midpoint of big and small toe
            out[target], out_present[target] = points[list(toes)].mean(axis=0), True
    return out, out_present


def _put(points_out, present_out, points, present, index: int, field: str) -> None:
    _check_range(points, present, index, field)
    points_out[:] = np.where(present[:, None], points, MISSING_COORDINATE)
    present_out[:] = present


def _check_range(points: np.ndarray, present: np.ndarray, index: int, field: str) -> None:
    low, high = -COORDINATE_MARGIN, 1.0 + COORDINATE_MARGIN
    outside = np.flatnonzero(present & ((points < low) | (points > high)).any(axis=1))
    if outside.size:
        k = outside[0]
        raise PoseInputError(
            f"frame {index}: {field} point {k} at normalised ({points[k, 0]:g}, {points[k, 1]:g}) is far "
            f"outside the canvas (allowed {low:g}..{high:g}); check the canvas size and coordinate units"
        )


def _numbers(values: Any, index: int, field: str) -> np.ndarray:
    problem = f"frame {index}: {field} must hold only numbers, nested as documented"
    try:
        array = np.array(values, dtype=np.float64)
        as_objects = np.array(values, dtype=object)
    except (TypeError, ValueError):
        raise PoseInputError(problem) from None
    # numpy would quietly turn "1.5" or true into numbers; JSON numbers are int or float only.
    if as_objects.shape != array.shape or any(type(v) not in (int, float) for v in as_objects.flat):
        raise PoseInputError(problem)
    if not np.isfinite(array).all():
        raise PoseInputError(f"frame {index}: {field} holds NaN or infinity; send finite numbers")
    return array


# ---- DWPose -----------------------------------------------------------------------------------


def _fill_dwpose_frame(arrays: dict, index: int, frame: dict) -> None:
    bodies = frame["bodies"]
    if not isinstance(bodies, dict) or "candidate" not in bodies or "subset" not in bodies:
        raise PoseInputError(f"frame {index}: 'bodies' must be an object with 'candidate' and 'subset'")
    points, present = _dwpose_body(bodies["candidate"], bodies["subset"], index)
    _put_dwpose(arrays["body"][index], arrays["body_present"][index], points, present, index, "bodies.candidate")
    if frame.get("hands") is not None:
        hands = _point_lists(frame["hands"], index, "hands", NUM_HAND_POINTS)
        for hand, row in enumerate(_first_person_hands(len(hands), len(bodies["subset"]), index)):
            _put_dwpose(arrays["hands"][index, hand], arrays["hands_present"][index, hand], hands[row],
                        dwpose_presence(hands[row]), index, f"hands[{row}]")
    if frame.get("faces") is not None:
        faces = _point_lists(frame["faces"], index, "faces", NUM_FACE_POINTS)
        if len(faces) > MAX_PEOPLE_PER_FRAME:
            raise PoseInputError(f"frame {index}: {len(faces)} faces; at most {MAX_PEOPLE_PER_FRAME} allowed")
        if len(faces):
            _put_dwpose(arrays["face"][index], arrays["face_present"][index], faces[0],
                        dwpose_presence(faces[0]), index, "faces[0]")


def _dwpose_carries(frames: list) -> frozenset[str]:
    """Toes come with 20-column subsets; hands and faces when the frames have them."""
    carries = set()
    for frame in frames:
        subset = frame["bodies"]["subset"]
        if subset and len(subset[0]) == NUM_BODY_POINTS:
            carries.add("toes")
        for part, key in (("hands", "hands"), ("face", "faces")):
            if frame.get(key):
                carries.add(part)
    return frozenset(carries)


def _first_person_hands(count: int, people: int, index: int) -> tuple[int, int]:
    """Rows of the first person's (left, right) hand: the detector stacks every person's left hand,
    then every right hand, so with N people they are rows 0 and N."""
    if count == 2:
        return 0, 1
    if people > 1 and count == 2 * people:
        return 0, people
    raise PoseInputError(
        f"frame {index}: 'hands' holds {count} hands; expected 2 (left, right), or 2 per person of "
        f"bodies.subset ({2 * people} here: every left hand, then every right hand)"
    )


def _dwpose_body(candidate: Any, subset: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    candidate = _numbers(candidate, index, "bodies.candidate")
    if candidate.ndim != 2 or candidate.shape[1] != 2:
        raise PoseInputError(f"frame {index}: bodies.candidate must be a list of [x, y] pairs")
    subset = _numbers(subset, index, "bodies.subset")
    if subset.ndim != 2 or subset.shape[1] not in (18, NUM_BODY_POINTS):
        raise PoseInputError(
            f"frame {index}: bodies.subset must be a list of rows of 18 or 20 candidate indices (-1 = missing)"
        )
    if len(subset) > MAX_PEOPLE_PER_FRAME:
        raise PoseInputError(f"frame {index}: {len(subset)} people; at most {MAX_PEOPLE_PER_FRAME} allowed")
    points = np.full((NUM_BODY_POINTS, 2), MISSING_COORDINATE)
    present = np.zeros(NUM_BODY_POINTS, bool)
    # Candidate row k belongs to point k in the detector's output; keep even missing rows' coordinates.
    rows = min(len(candidate), NUM_BODY_POINTS)
    points[:rows] = candidate[:rows]
    if len(subset) == 0:
        return points, present
    for k, value in enumerate(subset[0]):
        if value == -1:
            continue
        if value != int(value) or not 0 <= value < len(candidate):
            raise PoseInputError(
                f"frame {index}: bodies.subset[0][{k}] = {value:g} is not -1 or an index into bodies.candidate"
            )
        points[k], present[k] = candidate[int(value)], True
    return points, present


def _point_lists(values: Any, index: int, field: str, count: int) -> np.ndarray:
    array = _numbers(values, index, field)
    if array.size == 0:
        return array.reshape(0, count, 2)
    if array.ndim != 3 or array.shape[1:] != (count, 2):
        raise PoseInputError(f"frame {index}: {field} must be a list of {count} [x, y] points per entry")
    return array


def dwpose_presence(points: np.ndarray) -> np.ndarray:
    """Hand and face points have no subset: the detector marks the ones it did not see with (-1, -1)."""
    return ~((points[:, 0] == MISSING_COORDINATE) & (points[:, 1] == MISSING_COORDINATE))


def _put_dwpose(points_out, present_out, points, present, index: int, field: str) -> None:
    _check_range(points, present, index, field)
    points_out[:] = points  # keep the original's coordinates, missing ones included
    present_out[:] = present


# ---- back to the DWPose layout ----------------------------------------------------------------


def to_dwpose_frame(sequence: PoseSequence, index: int) -> dict:
    """Frame `index` in the original's layout (JSON-ready lists); body rows keep missing points' coordinates."""
    subset = [float(k) if present else -1.0 for k, present in enumerate(sequence.body_present[index])]
    # Hands and faces have no subset: the layout can only say "missing" with (-1, -1).
    hands = np.where(sequence.hands_present[index][..., None], sequence.hands[index], MISSING_COORDINATE)
    face = np.where(sequence.face_present[index][..., None], sequence.face[index], MISSING_COORDINATE)
    return {
        "bodies": {"candidate": sequence.body[index].tolist(), "subset": [subset]},
        "hands": hands.tolist(),
        "faces": [face.tolist()],
    }


def to_pose_json(sequence: PoseSequence) -> dict:
    """The whole sequence as a document `parse_pose_json` reads back to the same poses."""
    document: dict[str, Any] = {
        "canvas_width": sequence.canvas_width,
        "canvas_height": sequence.canvas_height,
        "fps": sequence.fps,
        "frames": [to_dwpose_frame(sequence, i) for i in range(sequence.num_frames)],
    }
    if sequence.fps is None:
        del document["fps"]
    return document

