"""Fit a driving pose sequence to the reference person, as `run_align_pose.mp_main` does.

Everything is measured once, on the reference and on the first driving frame, and then applied to
every frame with the same numbers:
1. a global scale about the image origin: x by the ratio of shoulder widths, y by the ratio of torso
   heights (shoulder midpoint to hip midpoint);
2. fifteen bone ratios (reference length / scaled frame-0 length); each bone is stretched about its
   parent joint by moving the child and everything hanging below it rigidly, bone after bone;
3. a translation putting frame 0's neck on the reference neck.
Hands follow their arm chain; face landmarks are only scaled and translated (as in the original).

Where the original divides by a joint that is missing (its (-1, -1) marker enters the length), or by
zero, it silently produces garbage or NaN. We fall back instead, and say so in `Alignment.fallbacks`:
- a bone whose joints are missing in the reference or in frame 0, or that has zero length in frame 0,
  keeps ratio 1 (it is only scaled globally);
- a shoulder width (torso height) that is missing, or zero in either pose, takes its ratio from the
  other axis, converted through both images' pixel sizes so the person keeps their proportions in
  pixels; if both are unusable both ratios are 1;
- when the neck is missing in the reference or frame 0, the translation matches the mean of the body
  points present in both instead; with none in common there is no translation.
- in a later frame where a bone's parent or child is missing, the original measures that frame's
  stretch from the (-1, -1) marker and throws everything below the bone across the canvas for one
  frame (a hidden elbow makes the wrist and hand jump). The present points below the bone get, instead,
  the stretch interpolated linearly over time between the nearest frames where the bone is seen
  (the nearest one's at the ends; frame 0 always counts, as a bone whose ratio is not 1 is seen there).
  Missing points keep the original's offsets, so their raw coordinates stay the original's.
Whenever every point the original uses is present and no length it divides by (or, for the global
scale, divides into) is zero, the numbers and the results are the original's, bit for bit.
Missing points are transformed like present ones but stay missing, so a missing hand point can no
longer drift onto the canvas and be drawn, as it could in the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.pose.keypoints import BODY_POINT_NAMES, PoseSequence


@dataclass(frozen=True)
class Bone:
    name: str
    parent: int
    child: int
    moves: tuple[int, ...]  # body points translated when the bone is stretched
    hand: int | None = None  # hand (0 left, 1 right) that hangs below the bone


# In the original's order; names are the original's variable names (its "ll" is the right leg).
BONES = (
    Bone("neck", 1, 0, (0, 14, 15, 16, 17)),
    Bone("shoulder2", 1, 2, (2, 3, 4), hand=1),
    Bone("shoulder5", 1, 5, (5, 6, 7), hand=0),
    Bone("arm3", 2, 3, (3, 4), hand=1),
    Bone("arm4", 3, 4, (4,), hand=1),
    Bone("arm6", 5, 6, (6, 7), hand=0),
    Bone("arm7", 6, 7, (7,), hand=0),
    Bone("head14", 0, 14, (14, 16)),
    Bone("head15", 0, 15, (15, 17)),
    Bone("head16", 14, 16, (16,)),
    Bone("head17", 15, 17, (17,)),
    Bone("ll1", 8, 9, (9, 10, 19)),
    Bone("ll2", 9, 10, (10, 19)),
    Bone("rl1", 11, 12, (12, 13, 18)),
    Bone("rl2", 12, 13, (13, 18)),
)
NECK = 1
RIGHT_SHOULDER, LEFT_SHOULDER, RIGHT_HIP, LEFT_HIP = 2, 5, 8, 11


@dataclass(frozen=True)
class Alignment:
    """The aligned sequence and every number that produced it (the original's local variables)."""

    sequence: PoseSequence
    x_ratio: float
    y_ratio: float
    bone_ratios: dict[str, float]
    offset: tuple[float, float]
    fallbacks: tuple[str, ...]


def align_to_reference(driving: PoseSequence, reference: PoseSequence) -> Alignment:
    """Rescales and moves `driving` onto the person in `reference` (its frame 0).

    The result is in the reference image's normalised coordinates (its canvas size) at the driving fps.
    """
    ref_body, ref_present = reference.body[0], reference.body_present[0]
    first_body, first_present = driving.body[0], driving.body_present[0]
    fallbacks: list[str] = []

    x_ratio, y_ratio = _global_scale(ref_body, ref_present, first_body, first_present, driving, reference, fallbacks)
    body = driving.body.copy()
    hands = driving.hands.copy()
    face = driving.face.copy()
    for points in (body, hands, face):
        points[..., 0] *= x_ratio
        points[..., 1] *= y_ratio

    # Ratios are measured on frame 0 bone by bone, as each earlier bone is applied to it.
    first = body[:1].copy()
    first_hands = hands[:1].copy()
    bone_ratios: dict[str, float] = {}
    for bone in BONES:
        ratio = _bone_ratio(bone, ref_body, ref_present, first[0], first_present, fallbacks)
        _stretch(bone, ratio, first, first_hands, driving.body_present[:1], driving.hands_present[:1])
        bone_ratios[bone.name] = ratio
    for bone in BONES:
        patched = _stretch(bone, bone_ratios[bone.name], body, hands, driving.body_present, driving.hands_present)
        if patched.size:
            fallbacks.append(
                f"bone {bone.name}: {BODY_POINT_NAMES[bone.parent]} or {BODY_POINT_NAMES[bone.child]} missing in "
                f"{_frames_text(patched)}: the points below it took the stretch interpolated from the frames around"
            )

    offset = _translation(ref_body, ref_present, body[0], first_present, fallbacks)
    body += offset
    hands += offset
    face += offset
    aligned = driving.replace(
        body=body, hands=hands, face=face,
        canvas_width=reference.canvas_width, canvas_height=reference.canvas_height,
    )
    return Alignment(aligned, x_ratio, y_ratio, bone_ratios, (float(offset[0]), float(offset[1])), tuple(fallbacks))


def _global_scale(ref_body, ref_present, first_body, first_present, driving, reference, fallbacks):
    x_ratio = y_ratio = None
    shoulders = (RIGHT_SHOULDER, LEFT_SHOULDER)
    if ref_present[list(shoulders)].all() and first_present[list(shoulders)].all():
        ratio = (ref_body[LEFT_SHOULDER][0] - ref_body[RIGHT_SHOULDER][0]) / _nonzero(
            first_body[LEFT_SHOULDER][0] - first_body[RIGHT_SHOULDER][0]
        )
        x_ratio = ratio if np.isfinite(ratio) and ratio != 0 else None
    torso = (RIGHT_SHOULDER, LEFT_SHOULDER, RIGHT_HIP, LEFT_HIP)
    if ref_present[list(torso)].all() and first_present[list(torso)].all():
        ratio = _torso_height(ref_body) / _nonzero(_torso_height(first_body))
        y_ratio = ratio if np.isfinite(ratio) and ratio != 0 else None

    # Normalised units per pixel differ between the two images; convert through pixels.
    y_to_x = (reference.canvas_height / driving.canvas_height) * (driving.canvas_width / reference.canvas_width)
    if x_ratio is None and y_ratio is None:
        fallbacks.append("shoulders and hips unusable in the reference or frame 0: no global scaling")
        return 1.0, 1.0
    if x_ratio is None:
        fallbacks.append("shoulder width unusable in the reference or frame 0: x scale derived from torso height")
        x_ratio = abs(y_ratio) * y_to_x
    if y_ratio is None:
        fallbacks.append("torso height unusable in the reference or frame 0: y scale derived from shoulder width")
        y_ratio = abs(x_ratio) / y_to_x
    return float(x_ratio), float(y_ratio)


def _torso_height(body: np.ndarray) -> float:
    shoulder_mid = 0.5 * (body[RIGHT_SHOULDER] + body[LEFT_SHOULDER])
    hip_mid = 0.5 * (body[RIGHT_HIP] + body[LEFT_HIP])
    return hip_mid[1] - shoulder_mid[1]


def _bone_ratio(bone: Bone, ref_body, ref_present, first_body, first_present, fallbacks) -> float:
    ends = [bone.parent, bone.child]
    if not (ref_present[ends].all() and first_present[ends].all()):
        missing = [BODY_POINT_NAMES[k] for k in ends if not (ref_present[k] and first_present[k])]
        fallbacks.append(f"bone {bone.name}: {', '.join(missing)} missing in the reference or frame 0: ratio 1")
        return 1.0
    first_length = _length(first_body, bone)
    if first_length == 0:
        fallbacks.append(f"bone {bone.name}: zero length in frame 0: ratio 1")
        return 1.0
    return float(_length(ref_body, bone) / first_length)


def _length(body: np.ndarray, bone: Bone) -> float:
    dx = body[bone.parent][0] - body[bone.child][0]
    dy = body[bone.parent][1] - body[bone.child][1]
    return (dx**2 + dy**2) ** 0.5


def _stretch(
    bone: Bone, ratio: float, body: np.ndarray, hands: np.ndarray, body_present: np.ndarray,
    hands_present: np.ndarray,
) -> np.ndarray:
    """Moves the bone's child (and what hangs below it) along the bone, in place, for every frame.

    Returns the frames where the bone is not seen but present points below it moved (interpolated).
    """
    if ratio == 1.0:
        return np.zeros(0, np.int64)  # the offset is exactly zero in every frame
    offset = (body[:, bone.child] - body[:, bone.parent]) * (ratio - 1.0)  # [F, 2], the original's
    seen = body_present[:, bone.parent] & body_present[:, bone.child]
    sane = _interpolated(offset, seen)
    moves = list(bone.moves)
    moved_present = body_present[:, moves]
    body[:, moves] += np.where(moved_present[..., None], sane[:, None, :], offset[:, None, :])
    touched = moved_present.any(axis=1)
    if bone.hand is not None:
        hand_present = hands_present[:, bone.hand]
        hands[:, bone.hand] += np.where(hand_present[..., None], sane[:, None, :], offset[:, None, :])
        touched |= hand_present.any(axis=1)
    return np.flatnonzero(touched & ~seen)


def _interpolated(offset: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """`offset` where the bone is seen; elsewhere linear in time between the nearest seen frames."""
    if seen.all() or not seen.any():  # none seen cannot happen for a ratio other than 1 (frame 0 sees it)
        return offset
    frames = np.arange(len(offset))
    known = frames[seen]
    between = np.stack([np.interp(frames, known, offset[seen, axis]) for axis in range(2)], axis=1)
    return np.where(seen[:, None], offset, between)


def _frames_text(frames: np.ndarray, shown: int = 5) -> str:
    listed = ", ".join(str(int(f)) for f in frames[:shown])
    more = f" and {len(frames) - shown} more" if len(frames) > shown else ""
    return f"frame{'s' if len(frames) > 1 else ''} {listed}{more}"


def _translation(ref_body, ref_present, first_body, first_present, fallbacks) -> np.ndarray:
    if ref_present[NECK] and first_present[NECK]:
        return ref_body[NECK] - first_body[NECK]
    common = ref_present & first_present
    if common.any():
        fallbacks.append("neck missing in the reference or frame 0: matched the mean of the shared body points")
        return ref_body[common].mean(axis=0) - first_body[common].mean(axis=0)
    fallbacks.append("no body point present in both the reference and frame 0: no translation")
    return np.zeros(2)


def _nonzero(value: float) -> float:
    """The divisor, or NaN for zero so the ratio is rejected instead of raising a warning."""
    return value if value != 0 else np.nan
