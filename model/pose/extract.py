"""Pose extraction from photos and raw videos with DWPose through onnxruntime.

The two networks and their pre/post-processing are in `dwpose_onnx`; this module turns their 133
COCO-WholeBody points into the original's DWPose layout (`dwpose/wholebody.py` adds the neck and
reorders to OpenPose, `run_align_pose.DWposeDetector` normalises, thresholds and builds the toe
points) and runs that over images and videos. Only the first detected person is kept, as in the original.

Weights: `yolox_l.onnx` and `dw-ll_ucoco_384.onnx` in a folder given as `model_dir` or by the
`UNIANIMATE_DWPOSE_DIR` environment variable.
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from model.errors import RenderCancelled
from model.pose import dwpose_onnx
from model.pose.formats import dwpose_presence
from model.pose.keypoints import (
    MAX_CANVAS_SIZE,
    MISSING_COORDINATE,
    NUM_BODY_POINTS,
    PoseInputError,
    PoseSequence,
    missing_arrays,
)
from model.pose.sampling import resolve_frame_interval
from model.pose.video import VideoSource, iter_video_frames, probe_video

logger = logging.getLogger(__name__)

DETECTOR_FILE = "yolox_l.onnx"
ESTIMATOR_FILE = "dw-ll_ucoco_384.onnx"
MODEL_DIR_ENV = "UNIANIMATE_DWPOSE_DIR"

Device = Literal["auto", "cpu", "cuda"]

# Thresholds of DWposeDetector: a point is drawn when its score is > 0.3, and its coordinates are
# overwritten with (-1, -1) when the score is < 0.3 (a score of exactly 0.3 is neither).
VISIBLE_SCORE = 0.3
NUM_WHOLEBODY_POINTS = 133
# After the neck is inserted at 17: feet 18..23, face 24..91, left hand 92..112, right hand 113..133.
_LEFT_TOES, _RIGHT_TOES = (18, 19), (21, 22)
_FACE, _LEFT_HAND, _RIGHT_HAND = slice(24, 92), slice(92, 113), slice(113, 134)
# wholebody.py: COCO order -> OpenPose order for the 18 body points (the neck is COCO index 17 here).
_MMPOSE_ORDER = [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3]
_OPENPOSE_ORDER = [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17]


class DWPoseNotConfigured(RuntimeError):
    """The DWPose ONNX weights are not where the configuration says."""


def dwpose_model_paths(model_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(detector, estimator) ONNX paths, checked to exist."""
    folder = model_dir if model_dir is not None else os.environ.get(MODEL_DIR_ENV)
    if not folder:
        raise DWPoseNotConfigured(
            f"pose extraction needs the DWPose weights: put {DETECTOR_FILE} and {ESTIMATOR_FILE} in a folder "
            f"and set {MODEL_DIR_ENV} to it (or pass --dwpose-dir); or send keypoints or a skeleton video instead"
        )
    paths = (Path(folder) / DETECTOR_FILE, Path(folder) / ESTIMATOR_FILE)
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DWPoseNotConfigured(f"DWPose weights not found: {', '.join(absent)}; check {MODEL_DIR_ENV}")
    return paths


def onnx_providers(device: Device = "auto") -> list[str]:
    """onnxruntime providers for `device`; "auto" takes CUDA when this onnxruntime build has it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        # A GPU worker with the CPU-only onnxruntime still extracts poses, only slower: refusing
        # would stop the worker at start-up. `pip install onnxruntime-gpu` (the `gpu` extra) fixes it.
        logger.warning("DWPose: device 'cuda' asked for, but onnxruntime has no CUDAExecutionProvider here "
                       "(install onnxruntime-gpu); running pose extraction on the CPU provider")
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def wholebody_to_frame(points: np.ndarray, scores: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
    """One person's 133 COCO-WholeBody points (image pixels) and scores -> one frame of pose arrays."""
    info = np.concatenate((points, scores[:, None]), axis=-1)
    neck = np.mean(info[[5, 6]], axis=0)
    neck[2] = float(info[5, 2] > VISIBLE_SCORE and info[6, 2] > VISIBLE_SCORE)
    info = np.insert(info, 17, neck, axis=0)
    info[_OPENPOSE_ORDER] = info[_MMPOSE_ORDER]
    candidate, score = info[:, :2].copy(), info[:, 2]

    candidate[:, 0] /= float(width)
    candidate[:, 1] /= float(height)
    candidate[score < VISIBLE_SCORE] = MISSING_COORDINATE

    body = candidate[:NUM_BODY_POINTS].copy()
    present = score[:NUM_BODY_POINTS] > VISIBLE_SCORE
    for target, toes in ((18, _LEFT_TOES), (19, _RIGHT_TOES)):
        present[target] = bool((score[list(toes)] > VISIBLE_SCORE).all())
        both_kept = (candidate[list(toes)] != MISSING_COORDINATE).all()
        body[target] = (candidate[toes[0]] + candidate[toes[1]]) / 2 if both_kept else MISSING_COORDINATE
    hands = np.stack([candidate[_LEFT_HAND], candidate[_RIGHT_HAND]])
    face = candidate[_FACE]
    return {
        "body": body, "body_present": present,
        "hands": hands, "hands_present": np.stack([dwpose_presence(h) for h in hands]),
        "face": face, "face_present": dwpose_presence(face),
    }


class DWPoseExtractor:
    """DWPose on onnxruntime: `extract_image` for a reference photo, `extract_video` for a driving video."""

    def __init__(self, model_dir: str | Path | None = None, *, device: Device = "auto", sessions=None):
        """`sessions=(detector, estimator)` uses ready onnxruntime sessions instead of loading weights."""
        if sessions is None:
            import onnxruntime as ort

            detector_path, estimator_path = dwpose_model_paths(model_dir)
            providers = onnx_providers(device)
            sessions = tuple(ort.InferenceSession(str(p), providers=providers) for p in (detector_path, estimator_path))
        self.detector, self.estimator = sessions

    def frame_pose(self, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """The first detected person of one BGR image as one frame of pose arrays."""
        boxes = dwpose_onnx.detect_people(self.detector, image_bgr)
        points, scores = dwpose_onnx.estimate_keypoints(self.estimator, boxes, image_bgr)
        if points.shape[1:] != (NUM_WHOLEBODY_POINTS, 2):
            raise ValueError(f"pose estimator gave {points.shape[1]} keypoints; DWPose gives {NUM_WHOLEBODY_POINTS}")
        return wholebody_to_frame(points[0], scores[0], image_bgr.shape[1], image_bgr.shape[0])

    def extract_image(self, source: str | Path | bytes | np.ndarray) -> PoseSequence:
        """A one-frame sequence from a photo (path, encoded bytes, or an RGB array), EXIF-rotated like cv2."""
        rgb = load_image_rgb(source)
        arrays = missing_arrays(1)
        _put_frame(arrays, 0, self.frame_pose(np.ascontiguousarray(rgb[..., ::-1])))
        return PoseSequence(**arrays, canvas_width=rgb.shape[1], canvas_height=rgb.shape[0])

    def extract_video(
        self,
        source: VideoSource,
        frame_interval: int | None = None,
        *,
        on_frame: Callable[[int, int | None], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> PoseSequence:
        """Poses of every `frame_interval`-th frame of a video (default: down to 15 fps or less).

        `on_frame(done, total_or_None)` reports progress; `cancel()` returning True stops with RenderCancelled.
        """
        info = probe_video(source)
        interval = resolve_frame_interval(info.fps, frame_interval)
        total = None if info.num_frames is None else -(-info.num_frames // interval)
        frames = []
        for _, _, rgb in iter_video_frames(source, interval):
            if cancel is not None and cancel():
                raise RenderCancelled("pose extraction cancelled")
            frames.append(self.frame_pose(np.ascontiguousarray(rgb[..., ::-1])))
            if on_frame is not None:
                on_frame(len(frames), total)
        arrays = missing_arrays(len(frames))
        for i, frame in enumerate(frames):
            _put_frame(arrays, i, frame)
        return PoseSequence(**arrays, canvas_width=info.width, canvas_height=info.height, fps=info.fps / interval)


def _put_frame(arrays: dict, index: int, frame: dict[str, np.ndarray]) -> None:
    for name, values in frame.items():
        arrays[name][index] = values


def load_image_rgb(source: str | Path | bytes | np.ndarray) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB, turned upright by its EXIF orientation (cv2.imread does the same)."""
    if isinstance(source, np.ndarray):
        image = source
    else:
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
                if max(opened.size) > MAX_CANVAS_SIZE:
                    raise PoseInputError(
                        f"the image is {opened.size[0]}x{opened.size[1]}; each side must be at most {MAX_CANVAS_SIZE}"
                    )
                image = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        except (OSError, Image.DecompressionBombError) as exc:
            raise PoseInputError(f"could not read the image ({exc}); send a JPEG or PNG photo") from None
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or max(image.shape[:2]) > MAX_CANVAS_SIZE:
        raise PoseInputError(f"expected an RGB uint8 image up to {MAX_CANVAS_SIZE} pixels a side, got {image.shape}")
    return image
