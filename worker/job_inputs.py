"""A job's stored inputs and RenderParams -> `model.motion.prepare_motion`, which holds the rules.

A job sends one `pose_video` for both kinds of video: drawn skeletons are used as they are, camera
footage goes through the pose extractor. `params.fps` is the output rate.

The pose video's sound goes into the result when the result plays at the video's own speed. A
`params.fps` other than the source rate / frame interval makes the motion play faster or slower
than the video did, and its sound would drift away from it: the sound is then left out.
"""
from __future__ import annotations

import dataclasses
import logging
from fractions import Fraction
from pathlib import Path

from model.longvideo.mp4 import exact_fps
from model.motion import Motion, frame_timing, is_skeleton_video, prepare_motion
from model.pose.keypoints import MissingCanvas, MissingFps, PoseInputError
from model.pose.video import probe_video
from service.jobs.params import RenderParams, in_api_words

log = logging.getLogger(__name__)

# 29.97 fps footage rendered at fps=30 plays 0.1 % fast (60 ms over a minute): close enough to keep
SPEED_TOLERANCE = Fraction(1, 1000)


def load_motion(files: dict[str, Path], params: RenderParams, extractor=None) -> Motion:
    """The motion of input files named as in POST /animate (`reference_image`, `pose_keypoints` or
    `pose_video`, optional `reference_keypoints`). `extractor` is a `DWPoseExtractor` or None.

    Raises PoseInputError (a ValueError) with a message for the client when an input is unusable.
    """
    videos = {}
    if "pose_video" in files:
        role = "skeleton_video" if is_skeleton_video(files["pose_video"]) else "driving_video"
        videos[role] = files["pose_video"]
    try:
        motion = _prepare(files, params, videos, extractor)
    except (MissingCanvas, MissingFps) as exc:  # said with the request's fields
        what = "canvas" if isinstance(exc, MissingCanvas) else "fps"
        raise PoseInputError(in_api_words(exc.role or "pose_keypoints", what, exc.detail)) from None
    if motion.audio_source is not None and not plays_at_source_speed(motion, params):
        log.info("the pose video's sound is left out: at %g fps its motion plays at %.3gx its own speed",
                 float(motion.fps), float(speed(motion, params)))
        motion = dataclasses.replace(motion, audio_source=None)
    return motion


def _prepare(files: dict[str, Path], params: RenderParams, videos: dict, extractor) -> Motion:
    return prepare_motion(
        reference_image=files["reference_image"],
        reference_keypoints=files.get("reference_keypoints"),
        pose_keypoints=files.get("pose_keypoints"),
        **videos,
        height=params.height,
        width=params.width,
        pose_canvas=params.pose_canvas,
        frame_interval=params.frame_interval,
        output_fps=params.fps,
        max_duration_s=params.max_duration_s,
        align=params.align_pose,
        extractor=extractor,
    )


def speed(motion: Motion, params: RenderParams) -> Fraction:
    """How much faster than the pose video the result plays (1: the same speed)."""
    source_fps = exact_fps(probe_video(motion.audio_source).fps)
    interval, _ = frame_timing(source_fps, frame_interval=params.frame_interval, output_fps=params.fps)
    return motion.fps * interval / source_fps


def plays_at_source_speed(motion: Motion, params: RenderParams) -> bool:
    return params.fps is None or abs(speed(motion, params) - 1) <= SPEED_TOLERANCE
