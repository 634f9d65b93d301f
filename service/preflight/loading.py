"""A preflight's motion: the same `prepare_motion` call the worker makes (worker/job_inputs.py), plus
the raw keypoints for the pose report. Torch-free: model.motion and model.pose are numpy/cv2/PyAV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.motion import Motion, is_skeleton_video, prepare_motion
from model.pose.inputs import load_pose_input, load_reference_pose
from model.pose.keypoints import PoseSequence
from service.jobs.params import RenderParams


@dataclass(frozen=True)
class PreflightMotion:
    kind: str  # "keypoints" | "skeleton_video" | "driving_video"
    motion: Motion | None  # None: a camera video whose poses only the worker's extractor can detect
    driving: PoseSequence | None = None  # sent keypoints at the output rate, before alignment
    reference: PoseSequence | None = None


def load(files: dict[str, Path], params: RenderParams) -> PreflightMotion:
    """Raises PoseInputError (a ValueError) with the worker's words when an input is unusable."""
    if "pose_video" in files:
        if not is_skeleton_video(files["pose_video"]):
            return PreflightMotion("driving_video", None)
        return PreflightMotion("skeleton_video", _prepare(files, params, skeleton_video=files["pose_video"]))
    motion = _prepare(files, params, pose_keypoints=files["pose_keypoints"])
    return PreflightMotion("keypoints", motion, _sampled_keypoints(files, params, motion),
                           _reference(files, motion))


def _prepare(files: dict[str, Path], params: RenderParams, **motion_input: Path) -> Motion:
    return prepare_motion(reference_image=files["reference_image"],
                          reference_keypoints=files.get("reference_keypoints"), **motion_input,
                          height=params.height, width=params.width, frame_interval=params.frame_interval,
                          output_fps=params.fps, max_duration_s=params.max_duration_s, align=params.align_pose)


def _sampled_keypoints(files: dict[str, Path], params: RenderParams, motion: Motion) -> PoseSequence:
    """The keypoint frames `motion` renders (every frame_interval-th, cut to its length), unaligned."""
    sequence = load_pose_input(files["pose_keypoints"], "keypoints", frame_interval=1,
                               default_canvas="extent" if params.align_pose else None)
    keep = range(0, len(sequence), motion.frame_interval or 1)[: len(motion.poses)]
    return sequence.select(keep)


def _reference(files: dict[str, Path], motion: Motion) -> PoseSequence:
    height, width = motion.reference_image.shape[:2]
    return load_reference_pose(files["reference_keypoints"], "keypoints", default_canvas=(width, height))
