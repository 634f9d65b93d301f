"""The one pose type everything in `model.pose` passes around, its keypoint layout and input limits.

UniAnimate was trained on DWPose skeletons, so the sequence keeps DWPose's own conventions:
coordinates are `[x, y]` divided by the source image width and height (x right, y down), the body
has the 18 OpenPose points plus two toe points, `hands[0]` is the person's left hand. Unlike the
original, which marks a missing point only by writing `(-1, -1)` over it, presence is kept in explicit
masks, so a missing point stays missing wherever alignment moves its coordinates.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ---- keypoint layout -------------------------------------------------------------------------

NUM_BODY_POINTS = 20  # 18 OpenPose body points + left toes (18) + right toes (19)
NUM_HANDS = 2  # 0 = the person's left hand, 1 = the right hand
NUM_HAND_POINTS = 21
NUM_FACE_POINTS = 68

BODY_POINT_NAMES = (
    "nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow",
    "left wrist", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle",
    "right eye", "left eye", "right ear", "left ear", "left toes", "right toes",
)
HAND_NAMES = ("left hand", "right hand")

# What a keypoint format can hold beyond the 18 OpenPose body points. A format without one (OpenPose's
# 18-point COCO body has no toes; a body-only file has no hands) says nothing about it: never "missing".
CARRIES_ALL = frozenset({"toes", "hands", "face"})

# What the original detector writes over a point it did not see.
MISSING_COORDINATE = -1.0

# ---- limits on what users may send -----------------------------------------------------------

MAX_FRAMES = 20_000
MAX_CANVAS_SIZE = 8192  # pixels, per side
MAX_PEOPLE_PER_FRAME = 16
MAX_FPS = 240.0
# Present points may lie off the canvas (a hand leaving the frame), but not absurdly far: normalised
# coordinates must stay within [-COORDINATE_MARGIN, 1 + COORDINATE_MARGIN].
COORDINATE_MARGIN = 1.0
MAX_CONFIDENCE = 1000.0  # DWPose scores are not probabilities and can exceed 1

# The size the original draws every pose frame at, whatever the model resolution (H x W).
DRAW_HEIGHT = 768
DRAW_WIDTH = 512


class PoseInputError(ValueError):
    """Motion input that cannot be used; the message names the frame and field and says what to fix."""


class MissingCanvas(PoseInputError):
    """Pixel keypoints whose canvas size nobody gave. `detail` says what was seen; `role` (set by whoever
    knows it: "reference_keypoints" or "pose_keypoints") lets each interface name its own fix."""

    def __init__(self, detail: str, role: str | None = None) -> None:
        super().__init__(f"{detail}: give canvas_width and canvas_height, or normalise the coordinates to [0, 1]")
        self.detail, self.role = detail, role


class MissingFps(PoseInputError):
    """Keypoints that do not state their frame rate, where the render needs one (see MissingCanvas)."""

    def __init__(self, detail: str = "the pose keypoints do not say their frame rate", role: str | None = None):
        super().__init__(f'{detail}: add "fps" to the JSON document ({{"fps": 30, "frames": [...]}})')
        self.detail, self.role = detail, role


@dataclass(frozen=True, eq=False)
class PoseSequence:
    """One person's pose over F frames, in normalised DWPose coordinates.

    body `[F, 20, 2]`, body_present `[F, 20]`; hands `[F, 2, 21, 2]`, hands_present `[F, 2, 21]`;
    face `[F, 68, 2]`, face_present `[F, 68]`. Coordinates of missing points are carried along
    (the original transforms them too) but never drawn. `canvas_width`/`canvas_height` are the pixel
    size of the source the coordinates were normalised by; `fps` is None when the input did not say;
    `carries` is the subset of CARRIES_ALL the source format could hold at all.
    Arrays are copied and made read-only: derive new sequences with `replace` or `select`.
    """

    body: np.ndarray
    body_present: np.ndarray
    hands: np.ndarray
    hands_present: np.ndarray
    face: np.ndarray
    face_present: np.ndarray
    canvas_width: int
    canvas_height: int
    fps: float | None = None
    carries: frozenset[str] = CARRIES_ALL

    def __post_init__(self) -> None:
        frames = np.asarray(self.body).shape[0] if np.ndim(self.body) else 0
        shapes = {
            "body": ((frames, NUM_BODY_POINTS, 2), np.float64),
            "body_present": ((frames, NUM_BODY_POINTS), np.bool_),
            "hands": ((frames, NUM_HANDS, NUM_HAND_POINTS, 2), np.float64),
            "hands_present": ((frames, NUM_HANDS, NUM_HAND_POINTS), np.bool_),
            "face": ((frames, NUM_FACE_POINTS, 2), np.float64),
            "face_present": ((frames, NUM_FACE_POINTS), np.bool_),
        }
        for name, (shape, dtype) in shapes.items():
            array = np.array(getattr(self, name), dtype=dtype, copy=True)
            if array.shape != shape:
                raise PoseInputError(f"PoseSequence.{name} has shape {array.shape}, expected {shape}")
            if dtype is np.float64 and not np.isfinite(array).all():
                frame = int(np.argwhere(~np.isfinite(array))[0][0])
                raise PoseInputError(f"frame {frame}: {name} holds NaN or infinity")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        check_frame_count(frames)
        object.__setattr__(self, "canvas_width", check_canvas_side("canvas_width", self.canvas_width))
        object.__setattr__(self, "canvas_height", check_canvas_side("canvas_height", self.canvas_height))
        object.__setattr__(self, "fps", None if self.fps is None else check_fps(self.fps))

    @property
    def num_frames(self) -> int:
        return self.body.shape[0]

    def __len__(self) -> int:
        return self.num_frames

    @property
    def timestamps(self) -> np.ndarray:
        """Presentation time of each frame in seconds (frame i at i / fps)."""
        return np.arange(self.num_frames) / self._known_fps()

    @property
    def duration_s(self) -> float:
        return self.num_frames / self._known_fps()

    def select(self, indices: Sequence[int]) -> PoseSequence:
        """The frames at `indices`, in that order (fps unchanged: the caller knows the new rate)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size and (idx.min() < -self.num_frames or idx.max() >= self.num_frames):
            raise IndexError(f"frame indices out of range for a {self.num_frames}-frame sequence")
        return self.replace(**{name: getattr(self, name)[idx] for name in ARRAY_FIELDS})

    def replace(self, **changes) -> PoseSequence:
        return dataclasses.replace(self, **changes)

    def _known_fps(self) -> float:
        if self.fps is None:
            raise PoseInputError("the pose sequence has no frame rate: give its fps")
        return self.fps


ARRAY_FIELDS = ("body", "body_present", "hands", "hands_present", "face", "face_present")


def missing_arrays(num_frames: int) -> dict[str, np.ndarray]:
    """Writable arrays for `num_frames` frames with every point missing, for parsers to fill in."""
    return {
        "body": np.full((num_frames, NUM_BODY_POINTS, 2), MISSING_COORDINATE),
        "body_present": np.zeros((num_frames, NUM_BODY_POINTS), bool),
        "hands": np.full((num_frames, NUM_HANDS, NUM_HAND_POINTS, 2), MISSING_COORDINATE),
        "hands_present": np.zeros((num_frames, NUM_HANDS, NUM_HAND_POINTS), bool),
        "face": np.full((num_frames, NUM_FACE_POINTS, 2), MISSING_COORDINATE),
        "face_present": np.zeros((num_frames, NUM_FACE_POINTS), bool),
    }


def check_frame_count(frames: int) -> int:
    if frames <= 0:
        raise PoseInputError("the pose sequence is empty: it needs at least one frame")
    if frames > MAX_FRAMES:
        raise PoseInputError(f"the pose sequence has {frames} frames; at most {MAX_FRAMES} are allowed")
    return frames


def check_canvas_side(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PoseInputError(f"{name} must be a whole number of pixels, got {value!r}")
    if not math.isfinite(value) or value != int(value) or not 0 < value <= MAX_CANVAS_SIZE:
        raise PoseInputError(f"{name} must be a whole number of pixels in 1..{MAX_CANVAS_SIZE}, got {value!r}")
    return int(value)


def check_fps(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PoseInputError(f"fps must be a number, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_FPS:
        raise PoseInputError(f"fps must be a positive number up to {MAX_FPS:g}, got {value!r}")
    return float(value)
