"""Checks on uploaded inputs before anything is stored or queued.

Each check reads only what it must (image header before pixels, video headers and one
frame) and raises InputError with a message that says what to fix.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from PIL import Image, UnidentifiedImageError

from model.pose.formats import DefaultCanvas, parse_pose_json
from model.pose.keypoints import MissingCanvas, PoseInputError

# What fixes pixel keypoints without a canvas, in the request's words (the worker says the same through
# service.jobs.params.in_api_words, the command line through cli/hints.py).
CANVAS_FIX = {
    "pose_keypoints": "set params.pose_canvas_width and params.pose_canvas_height (the pixel size of the video "
                      "the poses came from), or add canvas_width and canvas_height to the file",
    "reference_keypoints": "add canvas_width and canvas_height (the reference photo's pixel size) to the file",
}

IMAGE_FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}
# demuxers FFmpeg may use on an upload: no playlists, no image sequences, no network protocols
VIDEO_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
VIDEO_EXTENSIONS = {"mov": "mp4", "matroska": "mkv", "avi": "avi"}
MIN_IMAGE_SIDE = 32
# pose videos slower than 1 fps are not motion; faster than 240 fps is a broken or hostile header
MIN_VIDEO_FPS, MAX_VIDEO_FPS = 1.0, 240.0
# brackets in one JSON document; a 32 MiB DWPose whole-body file (~5800 frames) has about 830000
MAX_JSON_CONTAINERS = 2_000_000


class InputError(ValueError):
    """An input is unusable; the message names the field and what to change."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int
    max_video_side: int
    max_video_frames: int
    max_video_duration_s: float
    max_json_bytes: int
    max_json_depth: int


@dataclass(frozen=True)
class CheckedInput:
    """A validated input in a temp file, and the fixed storage file name it will get."""
    name: str
    path: Path
    storage_name: str
    content_type: str
    info: dict[str, Any] = field(default_factory=dict)


def check_image(name: str, path: Path, limits: Limits) -> CheckedInput:
    try:
        with Image.open(path) as img:  # parses the header only
            fmt, (width, height) = img.format, img.size
            if fmt not in IMAGE_FORMATS:
                raise InputError(name, f"{fmt} images are not accepted; send PNG, JPEG or WebP")
            if width * height > limits.max_image_pixels:
                raise InputError(name, f"{width}x{height} is {width * height} pixels; the limit is "
                                       f"{limits.max_image_pixels}: downscale the image")
            if min(width, height) < MIN_IMAGE_SIDE:
                raise InputError(name, f"{width}x{height} is too small; each side must be at least "
                                       f"{MIN_IMAGE_SIDE} pixels")
            img.load()  # decode now, within the pixel budget, so corrupt data fails here
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own guard, for headers far over any limit
        raise InputError(name, f"the image is over the limit of {limits.max_image_pixels} pixels: "
                               "downscale the image") from exc
    except UnidentifiedImageError as exc:
        # PIL's message names the server's temp file: not the client's business
        raise InputError(name, "not a readable PNG, JPEG or WebP image: send the photo as a PNG, JPEG or "
                               "WebP file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(name, f"the image data is corrupt or truncated ({exc})") from exc
    ext, content_type = IMAGE_FORMATS[fmt]
    return CheckedInput(name, path, f"{name}.{ext}", content_type, {"width": width, "height": height})


def check_video(name: str, path: Path, limits: Limits) -> CheckedInput:
    """Probe container headers and decode a single frame; never the whole video."""
    try:
        with av.open(str(path), options={"format_whitelist": VIDEO_DEMUXERS,
                                         "protocol_whitelist": "file"}) as container:
            info = _video_info(name, container, limits)
            family = container.format.name.split(",")[0]
    except InputError:
        raise
    except (av.FFmpegError, ValueError, StopIteration, OSError) as exc:
        raise InputError(name, "not a readable video; send MP4 (H.264), WebM/MKV or AVI "
                               f"({type(exc).__name__})") from exc
    ext = VIDEO_EXTENSIONS.get(family, "mp4")
    return CheckedInput(name, path, f"{name}.{ext}", "video/mp4" if ext == "mp4" else "application/octet-stream",
                        info)


def _video_info(name: str, container, limits: Limits) -> dict[str, Any]:
    if not container.streams.video:
        raise InputError(name, "the file has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not (0 < width <= limits.max_video_side and 0 < height <= limits.max_video_side):
        raise InputError(name, f"{width}x{height} is outside 1..{limits.max_video_side} pixels per side")
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if not MIN_VIDEO_FPS <= fps <= MAX_VIDEO_FPS:
        raise InputError(name, f"cannot determine a sane frame rate (got {fps:g}; expected {MIN_VIDEO_FPS:g} to "
                               f"{MAX_VIDEO_FPS:g}); re-encode the video at a fixed fps")
    if stream.duration is not None and stream.time_base:
        stated = float(stream.duration * stream.time_base)
    else:
        stated = (container.duration or 0) / av.time_base
    frames = stream.frames or round(stated * fps)
    duration = max(stated, frames / fps)  # a header may understate the length its frame count implies
    if duration > limits.max_video_duration_s:
        raise InputError(name, f"{duration:.1f} s long; at most {limits.max_video_duration_s:.0f} s")
    if frames > limits.max_video_frames:
        raise InputError(name, f"{frames} frames; at most {limits.max_video_frames}")
    next(container.decode(stream))  # proves the codec works; StopIteration if there is no frame
    return {"width": width, "height": height, "fps": fps, "frames": max(frames, 1),
            "duration_s": round(duration, 3)}


def check_keypoints(name: str, path: Path, limits: Limits, *, canvas: tuple[int, int] | None = None,
                    default_canvas: DefaultCanvas = None) -> CheckedInput:
    """Parse keypoint JSON with the API's limits (size, nesting, finite numbers), then with the
    parser the worker uses (model.pose), so a document the worker would refuse is refused now,
    with the parser's message naming the frame and field. Only numpy is imported for this."""
    size = path.stat().st_size
    if size > limits.max_json_bytes:
        raise InputError(name, f"{size} bytes; keypoint JSON may be at most {limits.max_json_bytes} bytes")
    document = parse_json(name, path.read_bytes(), limits.max_json_depth)
    if not isinstance(document, dict | list):  # the parser would take a string for JSON text
        raise InputError(name, f"expected a list of frames or an object with a 'frames' list, "
                               f"got a JSON {type(document).__name__}")
    width, height = canvas or (None, None)
    try:
        sequence = parse_pose_json(document, canvas_width=width, canvas_height=height, default_canvas=default_canvas)
    except MissingCanvas as exc:  # in the request's words: which field fixes it
        raise InputError(name, f"{exc.detail}: {CANVAS_FIX[name]}") from exc
    except PoseInputError as exc:
        raise InputError(name, str(exc)) from exc
    if name == "reference_keypoints" and sequence.num_frames != 1:
        raise InputError(name, f"the reference pose must be exactly one frame, got {sequence.num_frames}")
    return CheckedInput(name, path, f"{name}.json", "application/json",
                        {"frames": sequence.num_frames, "fps": sequence.fps})


def parse_json(name: str, data: bytes, max_depth: int) -> Any:
    """json.loads that refuses NaN/Infinity, documents nested deeper than `max_depth`, and
    documents with more objects and arrays than any real keypoint file has."""
    def no_constants(token: str) -> Any:
        raise InputError(name, f"{token} is not valid JSON; use finite numbers")

    # `[{},{},...]` makes ~70 bytes of Python objects per 3 bytes sent (32 MiB -> 800 MB, and
    # a minute of CPU); counting brackets first (C speed, an upper bound) refuses it unparsed.
    containers = data.count(b"{") + data.count(b"[")
    if containers > MAX_JSON_CONTAINERS:
        raise InputError(name, f"{containers} JSON objects and arrays; at most {MAX_JSON_CONTAINERS} are "
                               "accepted (a 20000-frame OpenPose sequence has about 140000)")
    try:
        document = json.loads(data, parse_constant=no_constants)
    except InputError:
        raise
    except RecursionError as exc:  # the C decoder guards its recursion; we turn it into a 4xx
        raise InputError(name, f"JSON nested deeper than {max_depth} levels") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(name, f"invalid JSON ({exc})") from exc
    except ValueError as exc:  # an integer past Python's digit limit (4300) for str -> int
        raise InputError(name, "a number in the JSON has too many digits; send at most 4300") from exc
    _check_tree(name, document, max_depth)
    return document


def _check_tree(name: str, document: Any, max_depth: int) -> None:
    """Depth limit, and finite numbers: literals like 1e999 parse as inf without parse_constant."""
    stack = [(document, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise InputError(name, "numbers must be finite")
        if isinstance(item, dict | list):
            if level > max_depth:
                raise InputError(name, f"JSON nested deeper than {max_depth} levels")
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
