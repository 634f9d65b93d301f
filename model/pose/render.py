"""Skeleton drawing, pixel for pixel as the original (`dwpose/util.py`, `run_align_pose.draw_pose`).

The model only ever saw skeletons drawn this way, so every rule below is part of the model's input
format: limb ellipses of half-width 4, the whole body layer dimmed to 60 %, joints redrawn at full
colour, hands on top undimmed, no face. Colours are listed in the order the original writes them into
its array. It then saved that array with `cv2.imwrite`, which stores channel 0 as blue, and the model
read the file back as RGB: what the model saw is the drawn array with its channels reversed (limb 0,
written [255, 0, 0], is blue to the model). Frames are always drawn at 768 x 512, saved as JPEG
(quality 95, `cv2.imwrite`'s default), read back with PIL and resized with PIL's bilinear filter, as
the original's pose script and `Resize` transform do; the JPEG round trip moves the tiny model's output
by about one level on average (docs/sampler.md), so it is kept.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

from model.pose.keypoints import DRAW_HEIGHT, DRAW_WIDTH, PoseSequence
from model.pose.video import SkeletonVideo

# (parent, child) point pairs; limb k uses BODY_COLORS[k]. The last two are the feet.
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (13, 18), (10, 19),
)
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85), (170, 255, 255), (255, 255, 0),
)
LIMB_HALF_WIDTH = 4
BODY_JOINT_RADIUS = 4
BODY_DIMMING = 0.6

HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
    (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
# HSV(i / 20, 1, 1) * 255 as the original's float colours come out of OpenCV's rounding.
HAND_EDGE_COLORS = (
    (255, 0, 0), (255, 77, 0), (255, 153, 0), (255, 229, 0), (204, 255, 0), (128, 255, 0), (51, 255, 0),
    (0, 255, 25), (0, 255, 102), (0, 255, 179), (0, 255, 255), (0, 178, 255), (0, 102, 255), (0, 25, 255),
    (51, 0, 255), (128, 0, 255), (204, 0, 255), (255, 0, 230), (255, 0, 153), (255, 0, 77),
)
HAND_EDGE_THICKNESS = 2
HAND_JOINT_COLOR = (0, 0, 255)
HAND_JOINT_RADIUS = 4
# `cv2.imwrite`'s JPEG quality: the original's pose script saved every skeleton frame this way.
ORIGINAL_JPEG_QUALITY = 95
FACE_COLOR = (255, 255, 255)
FACE_RADIUS = 3

# The original's hand/face test `int(x * W) > 0.01`: pixel column or row 0 counts as missing.
_EPS = 0.01


def draw_body(canvas: np.ndarray, points: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Body and feet of one frame (`draw_body_and_foot`); returns the dimmed canvas with joints on top.

    Mark the two toe points missing to get the original's 18-point `draw_bodypose` exactly.
    """
    height, width = canvas.shape[:2]
    for color, (a, b) in zip(BODY_COLORS, BODY_LIMBS):
        if present[a] and present[b]:
            cv2.fillConvexPoly(canvas, _limb_polygon(points[a], points[b], width, height), color)
    canvas = (canvas * BODY_DIMMING).astype(np.uint8)
    for color, (x, y), is_present in zip(BODY_COLORS, points, present):
        if is_present:
            cv2.circle(canvas, (int(x * width), int(y * height)), BODY_JOINT_RADIUS, color, thickness=-1)
    return canvas


def _limb_polygon(start: np.ndarray, end: np.ndarray, width: int, height: int) -> np.ndarray:
    # Same float operations, in the same order, as the original: the mean, length and angle are taken
    # on unrounded pixel positions and only then truncated.
    x0, x1 = start[0] * float(width), end[0] * float(width)
    y0, y1 = start[1] * float(height), end[1] * float(height)
    length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    center = (int((x0 + x1) / 2.0), int((y0 + y1) / 2.0))
    return cv2.ellipse2Poly(center, (int(length / 2), LIMB_HALF_WIDTH), int(angle), 0, 360, 1)


def draw_hands(canvas: np.ndarray, hands: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Both hands of one frame (`draw_handpose`), in place: bones then joints, hand by hand."""
    height, width = canvas.shape[:2]
    for points, points_present in zip(hands, present):
        pixels = [(int(x * width), int(y * height)) for x, y in points]
        visible = [ok and px > _EPS and py > _EPS for ok, (px, py) in zip(points_present, pixels)]
        for color, (a, b) in zip(HAND_EDGE_COLORS, HAND_EDGES):
            if visible[a] and visible[b]:
                cv2.line(canvas, pixels[a], pixels[b], color, thickness=HAND_EDGE_THICKNESS)
        for pixel, is_visible in zip(pixels, visible):
            if is_visible:
                cv2.circle(canvas, pixel, HAND_JOINT_RADIUS, HAND_JOINT_COLOR, thickness=-1)
    return canvas


def draw_face(canvas: np.ndarray, face: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Face landmarks of one frame (`draw_facepose`), in place. Never part of the model's input."""
    height, width = canvas.shape[:2]
    for (x, y), is_present in zip(face, present):
        px, py = int(x * width), int(y * height)
        if is_present and px > _EPS and py > _EPS:
            cv2.circle(canvas, (px, py), FACE_RADIUS, FACE_COLOR, thickness=-1)
    return canvas


def draw_frame(
    sequence: PoseSequence,
    index: int,
    *,
    include_face: bool = False,
    height: int = DRAW_HEIGHT,
    width: int = DRAW_WIDTH,
) -> np.ndarray:
    """Frame `index` drawn as `run_align_pose.draw_pose` does: `[H, W, 3]` uint8 in the original's
    array order (what it passed to `cv2.imwrite`). Body, then hands, then optionally the face."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas = draw_body(canvas, sequence.body[index], sequence.body_present[index])
    draw_hands(canvas, sequence.hands[index], sequence.hands_present[index])
    if include_face:
        draw_face(canvas, sequence.face[index], sequence.face_present[index])
    return canvas


def as_model_saw(drawn: np.ndarray, height: int, width: int,
                 jpeg_quality: int | None = ORIGINAL_JPEG_QUALITY) -> np.ndarray:
    """A drawn 768x512 array as the model received it: RGB of the saved file, resized to H x W.

    By default the original's JPEG round trip (`cv2.imwrite` at quality 95, read back with PIL);
    `jpeg_quality=None` skips it (lossless: the drawn colours exactly, e.g. to compare drawings).
    """
    if jpeg_quality is None:
        image = Image.fromarray(np.ascontiguousarray(drawn[..., ::-1]))
    else:
        ok, encoded = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise RuntimeError("OpenCV could not encode the pose frame as JPEG")
        image = Image.open(io.BytesIO(encoded.tobytes())).convert("RGB")
    return resize_like_original(image, height, width)


def resize_like_original(image: Image.Image, height: int, width: int) -> np.ndarray:
    """`utils/transforms.Resize`: PIL bilinear to (width, height); a same-size resize is a copy."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.array(image, dtype=np.uint8)


def iter_model_frames(
    motion: PoseSequence | SkeletonVideo, height: int, width: int, *, jpeg_quality: int | None = ORIGINAL_JPEG_QUALITY
) -> Iterator[np.ndarray]:
    """Model input frames one by one, `[H, W, 3]` uint8 RGB; lets long sequences stream.

    Keypoints are drawn; a skeleton video's frames are already what the model sees and are only resized.
    """
    if isinstance(motion, SkeletonVideo):
        for frame in motion.frames:
            yield resize_like_original(Image.fromarray(frame), height, width)
        return
    for index in range(motion.num_frames):
        yield as_model_saw(draw_frame(motion, index), height, width, jpeg_quality)


def pose_frames_for_model(
    motion: PoseSequence | SkeletonVideo, height: int, width: int, *, jpeg_quality: int | None = ORIGINAL_JPEG_QUALITY
) -> np.ndarray:
    """`[F, H, W, 3]` uint8 RGB: every driving pose frame as the model saw it.

    For long videos, take windows first (`PoseSequence.select`) or stream with `iter_model_frames`.
    """
    frames = np.empty((motion.num_frames, height, width, 3), dtype=np.uint8)
    for index, frame in enumerate(iter_model_frames(motion, height, width, jpeg_quality=jpeg_quality)):
        frames[index] = frame
    return frames


def reference_pose_for_model(
    reference: PoseSequence, height: int, width: int, *, jpeg_quality: int | None = ORIGINAL_JPEG_QUALITY
) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB: the reference image's own pose (frame 0, never aligned), as the model saw it."""
    return as_model_saw(draw_frame(reference, 0), height, width, jpeg_quality)
