"""Motion input for UniAnimate: keypoints, skeleton drawing, alignment, extraction, previews.

Importing this package (and `keypoints`, `formats`, `inputs`, `sampling`) needs only numpy, so the
API process can validate keypoint uploads cheaply. Drawing (`render`), alignment (`align`), video
(`video`), extraction (`extract`) and previews (`preflight`) pull in OpenCV, PyAV or onnxruntime and
are imported from their modules. Nothing here imports torch.
"""
from model.pose.formats import parse_pose_json, to_pose_json
from model.pose.inputs import detect_input_kind, load_pose_input, load_reference_pose
from model.pose.keypoints import (
    DRAW_HEIGHT,
    DRAW_WIDTH,
    MAX_CANVAS_SIZE,
    MAX_FPS,
    MAX_FRAMES,
    MAX_PEOPLE_PER_FRAME,
    PoseInputError,
    PoseSequence,
)
from model.pose.sampling import resample, smooth

__all__ = [
    "DRAW_HEIGHT", "DRAW_WIDTH", "MAX_CANVAS_SIZE", "MAX_FPS", "MAX_FRAMES", "MAX_PEOPLE_PER_FRAME",
    "PoseInputError", "PoseSequence", "detect_input_kind", "load_pose_input", "load_reference_pose",
    "parse_pose_json", "resample", "smooth", "to_pose_json",
]
