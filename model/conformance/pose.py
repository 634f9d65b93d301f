"""Pose fixtures: drawing (`draw_case_*.json`) and alignment (`align_case_*.json`) of the original.

Frames must match the stored PNGs pixel for pixel (read back with cv2.imread, which returns the array
the original drew); keypoints must match within 1e-6. Each case also replays the detector
post-processing from the stored synthetic network outputs.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from model.conformance import CheckResult
from model.pose.align import align_to_reference
from model.pose.extract import wholebody_to_frame
from model.pose.formats import parse_pose_json
from model.pose.keypoints import PoseSequence
from model.pose.render import draw_body, draw_face, draw_frame, draw_hands

KEYPOINT_TOLERANCE = 1e-6


def check_draw_case(path: Path, data: dict) -> CheckResult:
    pose = parse_pose_json({key: data[key] for key in ("bodies", "hands", "faces")})
    height, width = data["canvas"]["height"], data["canvas"]["width"]
    body18 = pose.replace(body_present=pose.body_present & (np.arange(20) < 18))
    blank = np.zeros((height, width, 3), np.uint8)
    drawn = {
        f"{path.stem}.png": draw_frame(pose, 0, height=height, width=width),
        f"{path.stem}_with_face.png": draw_frame(pose, 0, include_face=True, height=height, width=width),
        f"{path.stem}_bodypose.png": draw_body(blank.copy(), body18.body[0], body18.body_present[0]),
        f"{path.stem}_hands.png": draw_hands(blank.copy(), pose.hands[0], pose.hands_present[0]),
        f"{path.stem}_face.png": draw_face(blank.copy(), pose.face[0], pose.face_present[0]),
    }
    failures = [f"{name}: {n} pixels differ" for name, n in _pixel_mismatches(path.parent, drawn)]
    source = data["detector_source"]
    error = _detector_error(source, source["image_width"], source["image_height"], pose)
    return _result(path, "pose_draw", failures, error)


def check_align_case(path: Path, data: dict) -> CheckResult:
    reference = parse_pose_json(data["reference"]["pose"])
    driving = parse_pose_json([frame["pose"] for frame in data["driving"]])
    ref_size, drv_size = data["reference_image_size"], data["driving_video_size"]
    error = _detector_error(data["reference"], ref_size["width"], ref_size["height"], reference)
    for i, frame in enumerate(data["driving"]):
        error = max(error, _detector_error(frame, drv_size["width"], drv_size["height"], driving.select([i])))

    reference = reference.replace(canvas_width=ref_size["width"], canvas_height=ref_size["height"])
    driving = driving.replace(canvas_width=drv_size["width"], canvas_height=drv_size["height"])
    aligned = align_to_reference(driving, reference).sequence
    # The stored aligned poses are compared as raw arrays: their missing hand points no longer carry the
    # (-1, -1) marker (the original moved them), so they are not valid DWPose input any more.
    for i, frame in enumerate(data["aligned"]):
        subset = np.asarray(frame["bodies"]["subset"][0])
        if not np.array_equal(subset != -1, aligned.body_present[i]):
            error = float("inf")
        for ours, theirs in ((aligned.body[i], frame["bodies"]["candidate"]), (aligned.hands[i], frame["hands"]),
                             (aligned.face[i], frame["faces"][0])):
            error = max(error, float(np.abs(ours - np.asarray(theirs)).max()))

    drawn = {name: draw_frame(aligned, i) for i, name in enumerate(data["frames_png"])}
    drawn[data["reference_pose_png"]] = draw_frame(reference, 0)
    failures = [f"{name}: {n} pixels differ" for name, n in _pixel_mismatches(path.parent, drawn)]
    return _result(path, "pose_align", failures, error)


def _detector_error(entry: dict, width: int, height: int, expected: PoseSequence) -> float:
    """Largest keypoint difference of the replayed detector post-processing (inf if presence differs)."""
    frame = wholebody_to_frame(
        np.asarray(entry["wholebody_keypoints_px"], float), np.asarray(entry["wholebody_scores"], float), width, height
    )
    error = 0.0
    for name, values in frame.items():
        stored = getattr(expected, name)[0]
        if values.dtype == bool:
            error = max(error, 0.0 if np.array_equal(values, stored) else float("inf"))
        else:
            error = max(error, float(np.abs(values - stored).max()))
    return error


def _pixel_mismatches(folder: Path, drawn: dict[str, np.ndarray]) -> list[tuple[str, int]]:
    mismatches = []
    for name, image in drawn.items():
        stored = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if stored is None:
            mismatches.append((f"{name} (missing file)", -1))
        elif stored.shape != image.shape or not np.array_equal(stored, image):
            differing = -1 if stored.shape != image.shape else int((stored != image).any(axis=2).sum())
            mismatches.append((name, differing))
    return mismatches


def _result(path: Path, kind: str, failures: list[str], keypoint_error: float) -> CheckResult:
    if keypoint_error > KEYPOINT_TOLERANCE:
        failures.append(f"keypoints differ by up to {keypoint_error:.3g} (tolerance {KEYPOINT_TOLERANCE:g})")
    return CheckResult(str(path), kind, keypoint_error, not failures, "; ".join(failures))
