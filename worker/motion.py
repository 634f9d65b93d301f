"""A job's stored inputs and RenderParams -> `model.motion.prepare_motion`, which holds the rules.

A job sends one `pose_video` for both kinds of video: drawn skeletons are used as they are, camera
footage goes through the pose extractor. `params.fps` is the output rate.
"""
from __future__ import annotations

from pathlib import Path

from model.motion import Motion, is_skeleton_video, prepare_motion
from service.params import RenderParams


def load_motion(files: dict[str, Path], params: RenderParams, extractor=None) -> Motion:
    """The motion of input files named as in POST /animate (`reference_image`, `pose_keypoints` or
    `pose_video`, optional `reference_keypoints`). `extractor` is a `DWPoseExtractor` or None.

    Raises PoseInputError (a ValueError) with a message for the client when an input is unusable.
    """
    videos = {}
    if "pose_video" in files:
        role = "skeleton_video" if is_skeleton_video(files["pose_video"]) else "driving_video"
        videos[role] = files["pose_video"]
    return prepare_motion(
        reference_image=files["reference_image"],
        reference_keypoints=files.get("reference_keypoints"),
        pose_keypoints=files.get("pose_keypoints"),
        **videos,
        height=params.height,
        width=params.width,
        frame_interval=params.frame_interval,
        output_fps=params.fps,
        max_duration_s=params.max_duration_s,
        align=params.align_pose,
        extractor=extractor,
    )
