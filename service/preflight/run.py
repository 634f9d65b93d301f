"""POST /animate/preflight's answer: pose report, segment plan, GPU estimate and preview links.

Runs in the API process (a worker thread): everything here is numpy/cv2/PyAV, never torch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from model.longvideo.planner import plan_segments
from model.pose.preflight import preflight
from service.jobs.params import RenderParams
from service.preflight import estimate, preview
from service.preflight.loading import PreflightMotion, load
from service.preflight.previews import Preview, PreviewStore


def run_preflight(files: dict[str, Path], params: RenderParams, previews: PreviewStore,
                  worker_classes: tuple[str, ...]) -> tuple[dict[str, Any], Preview | None]:
    """Raises PoseInputError (a ValueError) when an input cannot be rendered."""
    loaded = load(files, params)
    if loaded.motion is None:
        return _driving_video_report(params), None
    motion = loaded.motion
    frames = len(motion.poses)
    plan = plan_segments(frames, params.segment_frames)
    report = {
        "input": loaded.kind,
        "pose": _pose_report(loaded) | {
            "frames": frames, "source_fps": float(motion.fps * (motion.frame_interval or 1)),
            "frame_interval": motion.frame_interval, "output_fps": float(motion.fps),
            "duration_s": round(frames / float(motion.fps), 3), "alignment": motion.alignment},
        "segments": _plan_report(plan, params),
        "estimates": estimate.estimate(plan, params, worker_classes, height=motion.frame_size[0],
                                       width=motion.frame_size[1]),
    }
    with tempfile.TemporaryDirectory(prefix="unianimate-preview-") as tmp:
        clip = Path(tmp) / "preview.mp4"
        preview.clip_mp4(motion, clip)
        saved = previews.save(preview.strip_png(motion), clip)
    return report, saved


def _pose_report(loaded: PreflightMotion) -> dict[str, Any]:
    if loaded.driving is None:
        return {"has_keypoints": False, "missing_joints": [], "missing_fraction": {}, "frames_without_person": [],
                "proportions": None, "warnings": [
                    "drawn skeletons carry no keypoints: missing joints and alignment cannot be checked"]}
    checked = preflight(loaded.driving, loaded.reference)
    return {"has_keypoints": True, "missing_joints": checked.missing_per_frame,
            "missing_fraction": checked.missing_fraction, "frames_without_person": checked.frames_without_person,
            "proportions": None if checked.proportions is None else _proportions(checked.proportions),
            "warnings": [w for w in checked.warnings if "have no fps" not in w]}


def _proportions(p) -> dict[str, Any]:
    return {"x_ratio": p.x_ratio, "y_ratio": p.y_ratio, "squash": p.squash, "bone_ratios": p.bone_ratios,
            "offset": list(p.offset), "fallbacks": list(p.fallbacks)}


def _plan_report(plan, params: RenderParams) -> dict[str, Any]:
    return {"mode": params.long_video_mode, "segment_frames": params.segment_frames, "count": len(plan),
            "total_frames": plan.total_frames,
            "segments": [{"index": s.index, "start": s.start, "stop": s.stop, "new_frames": s.new_frames}
                         for s in plan.segments]}


def _driving_video_report(params: RenderParams) -> dict[str, Any]:
    """A camera video: only the worker's pose extractor (DWPose) can find its poses."""
    return {"input": "driving_video", "pose": None, "segments": None, "estimates": None,
            "warnings": [("the pose video is camera footage: its poses are detected by the worker when the job "
                         "runs (pose extraction is not configured in the API), so they cannot be previewed here")]}
