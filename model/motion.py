"""Motion inputs -> what the renderer needs: the reference image, its pose as the model sees it,
the driving poses at the output frame rate, and that rate. `unianimate render` and the worker both
come here; they only name their inputs differently.

Timing rules, in this order:
- source rate: the input's own (a video's container rate, a keypoint document's "fps"); keypoints
  that state none play at `source_fps`, or else at `output_fps * frame_interval` (each kept
  keypoint frame is one output frame);
- sampling: every `frame_interval`-th source frame; by default the interval closest to
  source / `output_fps` when `output_fps` is set, else the smallest one giving 15 fps or less;
- output rate: `output_fps` when set (the poses then play faster or slower), else source / interval;
- `max_duration_s` keeps the first floor(max_duration_s * output rate) frames (at least one).

Sizes: without `height` and `width` the output takes the reference photo's aspect ratio within the
model's area (`model.frame_size`). Reference keypoints in pixels without a stated canvas are taken to
be in the photo's own pixels (they describe it); the motion's canvas is `pose_canvas` or, when the
poses are aligned to the reference (which cancels it out), one just covering the keypoints.
A missing canvas or fps raises MissingCanvas / MissingFps with `role` set to the input's name
("reference_keypoints", "pose_keypoints"), so each interface can say how to give it in its own words.

Keypoints (sent, or detected in a driving video) are fitted to the reference person when `align`
is set; a skeleton video is used as drawn, since it has no keypoints to fit.
"""
from __future__ import annotations

import io
import math
from contextlib import closing, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from model.frame_size import resolve_frame_size
from model.longvideo.mp4 import exact_fps
from model.longvideo.protocol import DrawnPoseFrames, PoseFrames
from model.longvideo.video import output_timing
from model.longvideo.video_frames import VideoPoseFrames
from model.pose.align import align_to_reference
from model.pose.inputs import load_pose_input, load_reference_pose
from model.pose.keypoints import MissingCanvas, MissingFps, PoseInputError, PoseSequence
from model.pose.render import as_model_saw, draw_frame, reference_pose_for_model
from model.pose.video import iter_video_frames, probe_video

if TYPE_CHECKING:
    from model.pose.extract import DWPoseExtractor

# A rendered skeleton is a few coloured limbs on black: most of its pixels are (near) black.
SKELETON_DARK_LEVEL = 24
SKELETON_DARK_SHARE = 0.6


@dataclass(frozen=True)
class Motion:
    reference_image: np.ndarray  # [h, w, 3] uint8 RGB, upright, at its own size (the renderer resizes it)
    ref_pose: np.ndarray  # [H, W, 3] uint8: the reference photo's own pose, as the model sees it
    poses: PoseFrames  # driving poses at the output rate, [H, W, 3] each, drawn or decoded on demand
    fps: Fraction  # output frame rate
    audio_source: Path | None = None  # the video the motion came from, whose sound the result may carry
    frame_interval: int | None = None  # every how many source frames one was kept (for the manifest)
    alignment: dict[str, Any] | None = None  # the factors that fitted the keypoints (None: not aligned)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the output: the size the poses were drawn at."""
        return self.ref_pose.shape[0], self.ref_pose.shape[1]


def prepare_motion(
    *,
    reference_image: Path | bytes,
    reference_keypoints: Path | bytes | None = None,
    pose_keypoints: Path | bytes | None = None,
    skeleton_video: Path | None = None,
    driving_video: Path | None = None,
    height: int | None = None,
    width: int | None = None,
    size_multiple: int = 64,
    pose_canvas: tuple[int, int] | None = None,
    frame_interval: int | None = None,
    source_fps: float | None = None,
    output_fps: float | None = None,
    max_duration_s: float | None = None,
    align: bool = True,
    extractor: DWPoseExtractor | None = None,
) -> Motion:
    """The motion from exactly one of `pose_keypoints`, `skeleton_video` or `driving_video`.

    `extractor` (a `DWPoseExtractor`) is needed for a driving video and, without
    `reference_keypoints`, for the reference photo. Raises PoseInputError (a ValueError) with a
    message for the user when an input is unusable.
    """
    given = [name for name, value in (("pose keypoints", pose_keypoints), ("a skeleton video", skeleton_video),
                                      ("a driving video", driving_video)) if value is not None]
    if len(given) != 1:
        raise PoseInputError(f"give exactly one of pose keypoints, a skeleton video or a driving video, got "
                             f"{' and '.join(given) or 'none'}")
    if source_fps is not None and pose_keypoints is None:
        raise PoseInputError("a source frame rate is for pose keypoints only: a video states its own")
    _check_rates(source_fps=source_fps, output_fps=output_fps, max_duration_s=max_duration_s)
    image = load_image(reference_image)
    height, width = output_size(image, height, width, size_multiple)
    reference = _reference_pose(reference_keypoints, image, extractor)
    ref_pose = reference_pose_for_model(reference, height, width)
    timing = {"frame_interval": frame_interval, "output_fps": output_fps, "max_duration_s": max_duration_s}
    if skeleton_video is not None:
        poses, fps, interval = _skeleton_poses(Path(skeleton_video), height, width, **timing)
        return Motion(image, ref_pose, poses, fps, Path(skeleton_video), frame_interval=interval)
    if driving_video is not None:
        sequence, fps, interval = _extracted_poses(Path(driving_video), extractor, **timing)
    else:
        sequence, fps, interval = _sent_poses(pose_keypoints, source_fps, pose_canvas, align, **timing)
    factors = None
    if align:
        fitted = align_to_reference(sequence, reference)
        sequence = fitted.sequence
        factors = {"x_ratio": fitted.x_ratio, "y_ratio": fitted.y_ratio, "bone_ratios": dict(fitted.bone_ratios),
                   "offset": list(fitted.offset), "fallbacks": list(fitted.fallbacks)}

    def draw(index: int) -> np.ndarray:
        return as_model_saw(draw_frame(sequence, index), height, width)

    return Motion(image, ref_pose, DrawnPoseFrames(len(sequence), draw), fps, driving_video,
                  frame_interval=interval, alignment=factors)


def output_size(image: np.ndarray, height: int | None, width: int | None, multiple: int) -> tuple[int, int]:
    """The given size; a missing side from the other and the photo's aspect; neither: `default_frame_size`."""
    image_height, image_width = image.shape[:2]
    return resolve_frame_size(image_width, image_height, height, width, multiple)


def frame_timing(
    source_fps: Fraction | float, *, frame_interval: int | None = None, output_fps: float | None = None
) -> tuple[int, Fraction]:
    """(every how many source frames one is kept, output fps) by the rules in the module docstring."""
    if frame_interval is None and output_fps is not None:
        frame_interval = max(1, round(float(source_fps) / output_fps))
    interval, fps = output_timing(source_fps, frame_interval)
    return interval, fps if output_fps is None else exact_fps(output_fps)


def max_frames(max_duration_s: float | None, fps: Fraction) -> int | None:
    """How many output frames fit in `max_duration_s` (None: no limit)."""
    if max_duration_s is None:
        return None
    return max(1, math.floor(Fraction(max_duration_s) * fps))


def load_image(source: Path | bytes, what: str = "the reference image") -> np.ndarray:
    """An image as uint8 RGB, turned upright by its EXIF orientation (as pose detection sees it)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
            return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PoseInputError(f"{what} is not a readable PNG, JPEG or WebP file ({exc})") from None


def is_skeleton_video(path: Path) -> bool:
    """Whether a video shows drawn skeletons (its first frame mostly black) rather than camera footage."""
    with closing(iter_video_frames(path, 1)) as frames:
        _, _, first = next(frames)
    return looks_like_skeleton(first)


def looks_like_skeleton(frame: np.ndarray) -> bool:
    dark = frame.max(axis=-1) < SKELETON_DARK_LEVEL
    return float(dark.mean()) >= SKELETON_DARK_SHARE


def _check_rates(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise PoseInputError(f"{name} must be a positive number, got {value}")


def _reference_pose(keypoints: Path | bytes | None, image: np.ndarray, extractor) -> PoseSequence:
    if keypoints is not None:
        with _naming("reference_keypoints"):  # they describe the photo: its pixels are their canvas
            return load_reference_pose(keypoints, "keypoints", default_canvas=(image.shape[1], image.shape[0]))
    if extractor is None:
        raise PoseInputError("reference_keypoints is required: no pose extractor (DWPose) is configured to "
                             "detect the pose in the reference photo, so send the photo's keypoint JSON")
    return extractor.extract_image(image)


@contextmanager
def _naming(role: str):
    """Tags a missing canvas or fps with the input it is missing from."""
    try:
        yield
    except (MissingCanvas, MissingFps) as exc:
        exc.role = role
        raise


def _sent_poses(data: Path | bytes, source_fps: float | None, canvas: tuple[int, int] | None, align: bool, *,
                frame_interval, output_fps, max_duration_s) -> tuple[PoseSequence, Fraction, int]:
    width, height = canvas or (None, None)
    with _naming("pose_keypoints"):
        # frame_interval=1: read every frame; the timing rules here decide which ones are kept.
        sequence = load_pose_input(data, "keypoints", fps=source_fps, frame_interval=1, canvas_width=width,
                                   canvas_height=height, default_canvas="extent" if align else None)
        rate = sequence.fps
        if rate is None and output_fps is not None:
            rate = output_fps * (frame_interval or 1)
        if rate is None:
            raise MissingFps()
    interval, fps = frame_timing(rate, frame_interval=frame_interval, output_fps=output_fps)
    keep = range(0, len(sequence), interval)[: max_frames(max_duration_s, fps)]
    return sequence.select(keep), fps, interval


def _extracted_poses(path: Path, extractor, *, frame_interval, output_fps, max_duration_s
                     ) -> tuple[PoseSequence, Fraction, int]:
    if extractor is None:
        raise PoseInputError("the pose video is a camera video, not drawn skeletons, and no pose extractor "
                             "(DWPose) is configured to detect its poses: send pose keypoints or a video of "
                             "drawn skeletons")
    interval, fps = frame_timing(probe_video(path).fps, frame_interval=frame_interval, output_fps=output_fps)
    sequence = extractor.extract_video(path, interval)  # already sampled
    return sequence.select(range(len(sequence))[: max_frames(max_duration_s, fps)]), fps, interval


def _skeleton_poses(path: Path, height: int, width: int, *, frame_interval, output_fps, max_duration_s
                    ) -> tuple[PoseFrames, Fraction, int]:
    """Decoded lazily, segment by segment, so that a long video does not cost memory."""
    interval, fps = frame_timing(probe_video(path).fps, frame_interval=frame_interval, output_fps=output_fps)
    poses = VideoPoseFrames(path, frame_interval=interval, height=height, width=width,
                            max_frames=max_frames(max_duration_s, fps))
    return poses, fps, interval
