"""One entry point per role for every form of motion a user can send.

`load_pose_input` -> the driving motion: a `PoseSequence` (keypoint JSON, or poses extracted from a
raw video) or a `SkeletonVideo` (skeletons already drawn). `load_reference_pose` -> the reference
person's pose (keypoint JSON or a photo). Keypoint JSON needs only numpy: the API process can
validate uploads with `kind="keypoints"` without importing OpenCV, PyAV, onnxruntime or torch.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from model.pose.formats import Coordinates, DefaultCanvas, parse_pose_json
from model.pose.keypoints import PoseInputError, PoseSequence
from model.pose.sampling import resample, resolve_frame_interval

if TYPE_CHECKING:
    from model.pose.extract import DWPoseExtractor
    from model.pose.video import SkeletonVideo

InputKind = Literal["auto", "keypoints", "skeleton_video", "driving_video", "image"]

# Sent bytes larger than this are not read as JSON (a 20000-frame whole-body sequence is ~150 MB).
MAX_KEYPOINT_JSON_BYTES = 256 * 1024**2
# GIF is left out on purpose: an animated GIF is a skeleton video.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")


def load_pose_input(
    data: bytes | str | Path,
    kind: InputKind = "auto",
    *,
    canvas_width: int | None = None,
    canvas_height: int | None = None,
    fps: float | None = None,
    frame_interval: int | None = None,
    coordinates: Coordinates = "auto",
    default_canvas: DefaultCanvas = None,
    swap_red_blue: bool = False,
    extractor: DWPoseExtractor | None = None,
) -> PoseSequence | SkeletonVideo:
    """The driving motion from bytes or a file path, validated and sampled.

    Videos are sampled every `frame_interval` source frames (default: down to 15 fps or less); keypoint
    sequences too when their fps is known (`fps` is the rate of the keypoints as sent). A raw driving
    video needs `extractor` (see `model.pose.extract.DWPoseExtractor`). `kind="auto"` recognises JSON
    and images, but a video must be named `skeleton_video` or `driving_video`.
    """
    kind = _resolve_kind(data, kind)
    if kind == "keypoints":
        sequence = parse_pose_json(
            _read_json_bytes(data), canvas_width=canvas_width, canvas_height=canvas_height, fps=fps,
            coordinates=coordinates, default_canvas=default_canvas,
        )
        return _sample_keypoints(sequence, frame_interval)
    if kind == "skeleton_video":
        from model.pose.video import load_skeleton_video

        return load_skeleton_video(data, frame_interval, swap_red_blue=swap_red_blue)
    if kind == "driving_video":
        return _need_extractor(extractor).extract_video(data, frame_interval)
    raise PoseInputError("an image is a reference, not motion: send a video or keypoints as the pose sequence")


def load_reference_pose(
    data: bytes | str | Path,
    kind: InputKind = "auto",
    *,
    canvas_width: int | None = None,
    canvas_height: int | None = None,
    coordinates: Coordinates = "auto",
    default_canvas: DefaultCanvas = None,
    extractor: DWPoseExtractor | None = None,
) -> PoseSequence:
    """The reference person's pose (one frame) from keypoint JSON or, with `extractor`, from the photo."""
    kind = _resolve_kind(data, kind)
    if kind == "keypoints":
        sequence = parse_pose_json(
            _read_json_bytes(data), canvas_width=canvas_width, canvas_height=canvas_height, coordinates=coordinates,
            default_canvas=default_canvas,
        )
        if sequence.num_frames != 1:
            raise PoseInputError(f"reference keypoints must hold exactly one frame, got {sequence.num_frames}")
        return sequence
    if kind == "image":
        return _need_extractor(extractor).extract_image(data)
    raise PoseInputError("the reference pose must be keypoint JSON or the reference photo itself")


def _sample_keypoints(sequence: PoseSequence, frame_interval: int | None) -> PoseSequence:
    if sequence.fps is not None:
        return resample(sequence, frame_interval)
    if frame_interval is None:
        return sequence
    interval = resolve_frame_interval(1.0, frame_interval)
    return sequence.select(range(0, sequence.num_frames, interval))


def _resolve_kind(data: bytes | str | Path, kind: str) -> str:
    kinds = ("auto", "keypoints", "skeleton_video", "driving_video", "image")
    if kind not in kinds:
        raise PoseInputError(f"unknown pose input kind {kind!r}; use one of {', '.join(kinds)}")
    return detect_input_kind(data) if kind == "auto" else kind


def detect_input_kind(data: bytes | str | Path) -> str:
    """"keypoints" for JSON, "image" for JPEG/PNG/WebP/BMP; videos must be named by the caller."""
    head = _head(data)
    if head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] in (b"{", b"["):  # Windows editors write the BOM
        return "keypoints"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    raise PoseInputError(
        "could not tell what this input is: name its kind (keypoints, skeleton_video, driving_video or image); "
        "a video cannot be told apart as drawn skeletons or raw footage"
    )


def _head(data: bytes | str | Path) -> bytes:
    if isinstance(data, bytes):
        return data[:64]
    try:
        with open(data, "rb") as handle:
            return handle.read(64)
    except OSError as exc:
        raise PoseInputError(f"could not read {data}: {exc.strerror}") from None


def _read_json_bytes(data: bytes | str | Path) -> bytes:
    if isinstance(data, bytes):
        size = len(data)
    else:
        try:
            size = Path(data).stat().st_size
        except OSError as exc:
            raise PoseInputError(f"could not read {data}: {exc.strerror}") from None
    if size > MAX_KEYPOINT_JSON_BYTES:
        raise PoseInputError(f"the keypoint file is {size} bytes; at most {MAX_KEYPOINT_JSON_BYTES} are accepted")
    return data if isinstance(data, bytes) else Path(data).read_bytes()


def _need_extractor(extractor: DWPoseExtractor | None) -> DWPoseExtractor:
    """The given extractor, or one from UNIANIMATE_DWPOSE_DIR (DWPoseNotConfigured says how to set it)."""
    if extractor is not None:
        return extractor
    from model.pose.extract import DWPoseExtractor

    return DWPoseExtractor()
