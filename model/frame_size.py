"""The output size when the caller gives none: the reference photo's aspect ratio in the model's area.

The released model was trained at 768x512 (H x W). A portrait photo of that shape renders at exactly
that size; any other shape gets the largest frame of its own aspect ratio whose area is no larger
than 768 * 512 and whose sides are multiples the model accepts, so the person is not stretched.
"""
from __future__ import annotations

import math

NATIVE_HEIGHT, NATIVE_WIDTH = 768, 512
NATIVE_AREA = NATIVE_HEIGHT * NATIVE_WIDTH


# A frame within this much of the photo's aspect ratio (log scale, ~5 %) counts as the same shape:
# the reference is resized to the frame, so the person is stretched by at most that much.
ASPECT_TOLERANCE = 0.05
MAX_SIDE = 2048


def default_frame_size(image_width: int, image_height: int, multiple: int = 64,
                       area: int = NATIVE_AREA) -> tuple[int, int]:
    """(height, width): multiples of `multiple`, area at most `area`, sides at most MAX_SIDE; the largest
    such frame within ASPECT_TOLERANCE of the image's aspect ratio, or else the closest in aspect."""
    if image_width <= 0 or image_height <= 0:
        raise ValueError(f"an image of {image_width}x{image_height} pixels has no aspect ratio")
    aspect = image_height / image_width
    candidates = []
    for width in range(multiple, min(MAX_SIDE, area // multiple) + 1, multiple):
        cap = min(MAX_SIDE, area // width) // multiple * multiple
        for rounding in (math.floor, math.ceil):  # the heights of the right aspect either side
            height = max(multiple, min(cap, rounding(aspect * width / multiple) * multiple))
            if height <= cap:
                candidates.append((abs(math.log(height / width / aspect)), height, width))
    close = [c for c in candidates if c[0] <= ASPECT_TOLERANCE]
    if close:
        _, height, width = max(close, key=lambda c: (c[1] * c[2], -c[0]))
    else:
        _, height, width = min(candidates)
    return height, width


def resolve_frame_size(image_width: int, image_height: int, height: int | None, width: int | None,
                       multiple: int = 64) -> tuple[int, int]:
    """(height, width): the given size; a missing side from the other and the photo's aspect;
    neither given: `default_frame_size`."""
    if height is None and width is None:
        return default_frame_size(image_width, image_height, multiple)
    if height is None:
        height = max(1, round(width * image_height / image_width / multiple)) * multiple
    if width is None:
        width = max(1, round(height * image_width / image_height / multiple)) * multiple
    return height, width
