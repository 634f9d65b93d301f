"""What a user checks before spending GPU time: length, missing joints, how well the driving person's
proportions fit the reference, and a look at the aligned skeletons."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from model.pose.align import BONES, Alignment, align_to_reference
from model.pose.keypoints import BODY_POINT_NAMES, HAND_NAMES, NUM_BODY_POINTS, PoseSequence
from model.pose.render import iter_model_frames, reference_pose_for_model
from model.pose.video import SkeletonVideo

# A bone stretched or shrunk by more than this factor by alignment is worth a look.
BONE_RATIO_WARNING = 1.5
# The aligned person's width/height in pixels changed by more than this factor looks squashed.
SQUASH_WARNING = 1.25
# A joint missing in more than this fraction of frames will flicker in the animation.
MISSING_WARNING_FRACTION = 0.2
MODEL_ASPECT = 768 / 512  # height / width the model was trained on
TOE_POINTS = (18, 19)  # body points only some formats have (BODY_25, DWPose's 20-point body)


@dataclass(frozen=True)
class Proportions:
    """Reference vs. driving frame 0, as alignment measures them (ratios are reference / driving)."""

    x_ratio: float
    y_ratio: float
    squash: float  # aligned width/height in pixels relative to the driving person's; 1 = kept
    bone_ratios: dict[str, float]  # "right shoulder-right elbow" -> ratio
    offset: tuple[float, float]
    fallbacks: tuple[str, ...]


@dataclass(frozen=True)
class PreflightReport:
    num_frames: int
    fps: float | None
    duration_s: float | None
    source_size: tuple[int, int]  # (width, height) of the motion source
    has_keypoints: bool
    frames_without_person: list[int] = field(default_factory=list)
    # One entry per frame that misses anything: {"frame", "body": [names], "left hand": n, "right hand": n}.
    missing_per_frame: list[dict] = field(default_factory=list)
    missing_fraction: dict[str, float] = field(default_factory=dict)  # body joint -> share of frames missing
    # What the input format can hold beyond the 18 body points ("toes", "hands", "face"): the rest is
    # never reported missing, since the file could not have had it.
    format_carries: list[str] = field(default_factory=list)
    proportions: Proportions | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def preflight(
    driving: PoseSequence | SkeletonVideo, reference: PoseSequence | None = None, alignment: Alignment | None = None
) -> PreflightReport:
    """Checks the driving motion (and its fit to `reference`, aligning if `alignment` is not given)."""
    if isinstance(driving, SkeletonVideo):
        return _skeleton_video_report(driving, reference)
    warnings: list[str] = []
    if driving.fps is None:
        warnings.append("the keypoints have no fps: give it so the video plays at the right speed")
    missing = ~driving.body_present
    nobody = [int(i) for i in np.flatnonzero(missing.all(axis=1))]
    if nobody:
        warnings.append(f"{len(nobody)} frame(s) have no person at all (first: frame {nobody[0]})")
    fraction = {name: float(missing[:, k].mean()) for k, name in enumerate(BODY_POINT_NAMES)
                if k < TOE_POINTS[0] or "toes" in driving.carries}
    for name, share in fraction.items():
        if share > MISSING_WARNING_FRACTION:
            warnings.append(f"{name} is missing in {share:.0%} of frames")
    proportions = None
    if reference is not None:
        alignment = alignment or align_to_reference(driving, reference)
        proportions = _proportions(alignment, driving, reference)
        warnings += _proportion_warnings(proportions)
    return PreflightReport(
        num_frames=driving.num_frames,
        fps=driving.fps,
        duration_s=None if driving.fps is None else driving.duration_s,
        source_size=(driving.canvas_width, driving.canvas_height),
        has_keypoints=True,
        frames_without_person=nobody,
        missing_per_frame=_missing_per_frame(driving),
        missing_fraction=fraction,
        format_carries=sorted(driving.carries),
        proportions=proportions,
        warnings=warnings,
    )


def _missing_per_frame(sequence: PoseSequence) -> list[dict]:
    entries = []
    body_points = NUM_BODY_POINTS if "toes" in sequence.carries else TOE_POINTS[0]
    for i in range(sequence.num_frames):
        body = [BODY_POINT_NAMES[k] for k in np.flatnonzero(~sequence.body_present[i, :body_points])]
        hands = {name: int((~sequence.hands_present[i, h]).sum()) for h, name in enumerate(HAND_NAMES)
                 if "hands" in sequence.carries}
        if body or any(hands.values()):
            entries.append({"frame": i, "body": body, **hands})
    return entries


def _proportions(alignment: Alignment, driving: PoseSequence, reference: PoseSequence) -> Proportions:
    pixel_x = alignment.x_ratio * reference.canvas_width / driving.canvas_width
    pixel_y = alignment.y_ratio * reference.canvas_height / driving.canvas_height
    bones = {
        f"{BODY_POINT_NAMES[b.parent]}-{BODY_POINT_NAMES[b.child]}": alignment.bone_ratios[b.name] for b in BONES
    }
    return Proportions(
        alignment.x_ratio, alignment.y_ratio, float(abs(pixel_x) / pixel_y), bones, alignment.offset,
        alignment.fallbacks,
    )


def _proportion_warnings(p: Proportions) -> list[str]:
    warnings = [f"alignment fallback: {note}" for note in p.fallbacks]
    if p.x_ratio < 0:
        warnings.append(
            "frame 0 faces the other way from the reference (shoulders swapped): alignment mirrors every frame"
        )
    if not 1 / SQUASH_WARNING <= p.squash <= SQUASH_WARNING:
        warnings.append(f"alignment changes the person's width/height by {p.squash:.2f}x: they will look squashed")
    for bone, ratio in p.bone_ratios.items():
        if not 1 / BONE_RATIO_WARNING <= ratio <= BONE_RATIO_WARNING:
            warnings.append(f"bone {bone} is scaled by {ratio:.2f} to fit the reference")
    return warnings


def _skeleton_video_report(video: SkeletonVideo, reference: PoseSequence | None) -> PreflightReport:
    height, width = video.frames.shape[1:3]
    warnings = ["drawn skeletons carry no keypoints: missing joints and alignment cannot be checked"]
    if abs(height / width - MODEL_ASPECT) > 0.01:
        warnings.append(f"the skeleton video is {width}x{height}, not 2:3; frames are stretched to the output size")
    if reference is not None:
        warnings.append("the reference pose is ignored for alignment: drawn skeletons are used as they are")
    return PreflightReport(
        num_frames=video.num_frames, fps=video.fps, duration_s=video.num_frames / video.fps,
        source_size=(width, height), has_keypoints=False, warnings=warnings,
    )


# ---- previews ---------------------------------------------------------------------------------

PREVIEW_HEIGHT = 384
PREVIEW_WIDTH = 256
_SEPARATOR = 4


def preview_frames(
    driving: PoseSequence | SkeletonVideo, reference: PoseSequence | None = None, max_frames: int | None = None
):
    """Preview frames `[384, 512 or 256, 3]` RGB: the reference pose (if any) beside each driving pose,
    both as the model sees them. Pass the aligned sequence to preview what will be rendered."""
    ref = None if reference is None else _label(reference_pose_for_model(reference, PREVIEW_HEIGHT, PREVIEW_WIDTH), "ref")
    for i, frame in enumerate(iter_model_frames(driving, PREVIEW_HEIGHT, PREVIEW_WIDTH)):
        if max_frames is not None and i >= max_frames:
            return
        frame = _label(frame, f"#{i}")
        yield frame if ref is None else np.concatenate([ref, frame], axis=1)


def preview_strip(
    driving: PoseSequence | SkeletonVideo, reference: PoseSequence | None = None, count: int = 8
) -> np.ndarray:
    """One image: the reference pose, then `count` driving frames spread evenly over the sequence."""
    picks = np.unique(np.linspace(0, driving.num_frames - 1, min(count, driving.num_frames)).round().astype(int))
    if isinstance(driving, SkeletonVideo):
        chosen = SkeletonVideo(driving.frames[picks], driving.fps, driving.source_fps, driving.frame_interval)
    else:
        chosen = driving.select(picks)
    tiles = [] if reference is None else [_label(reference_pose_for_model(reference, PREVIEW_HEIGHT, PREVIEW_WIDTH), "ref")]
    for pick, frame in zip(picks, iter_model_frames(chosen, PREVIEW_HEIGHT, PREVIEW_WIDTH)):
        tiles.append(_label(frame, f"#{pick}"))
    gap = np.full((PREVIEW_HEIGHT, _SEPARATOR, 3), 96, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
