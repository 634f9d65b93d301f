"""A plausible person for preflight and playback tests: OpenPose-18 keypoints (normalised to the
canvas) of someone standing, and a dance that swings the arms; a photo of a stick figure."""
from __future__ import annotations

import io
import json
import math

import numpy as np
from PIL import Image, ImageDraw

# x, y of the 18 OpenPose body points of a person standing in the middle of a 2:3 canvas
STANDING = [(0.50, 0.18), (0.50, 0.28), (0.40, 0.28), (0.36, 0.42), (0.34, 0.55), (0.60, 0.28), (0.64, 0.42),
            (0.66, 0.55), (0.44, 0.56), (0.44, 0.72), (0.44, 0.88), (0.56, 0.56), (0.56, 0.72), (0.56, 0.88),
            (0.48, 0.16), (0.52, 0.16), (0.46, 0.17), (0.54, 0.17)]


def _people(points) -> dict:
    return {"people": [{"pose_keypoints_2d": [v for x, y in points for v in (round(x, 4), round(y, 4), 0.9)]}]}


def reference_keypoints_bytes() -> bytes:
    return json.dumps(_people(STANDING)).encode()


def dance_frames(frames: int, fps: float) -> list[list[tuple[float, float]]]:
    out = []
    for i in range(frames):
        swing = 0.12 * math.sin(2 * math.pi * i / fps)  # one arm swing a second
        points = list(STANDING)
        points[3] = (0.36, 0.42 - swing)
        points[4] = (0.34 - swing / 2, 0.55 - 2 * swing)
        points[6] = (0.64, 0.42 + swing)
        points[7] = (0.66 + swing / 2, 0.55 + 2 * swing)
        out.append(points)
    return out


def dance_keypoints_bytes(frames: int = 30, fps: float = 15) -> bytes:
    return json.dumps({"fps": fps, "frames": [_people(p) for p in dance_frames(frames, fps)]}).encode()


def person_png(width: int = 256, height: int = 384) -> bytes:
    """A stick figure in the standing pose on a grey background (what reference_keypoints describe)."""
    image = Image.new("RGB", (width, height), (150, 160, 170))
    draw = ImageDraw.Draw(image)
    px = [(x * width, y * height) for x, y in STANDING]
    for a, b in ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                 (12, 13), (0, 1)):
        draw.line([px[a], px[b]], fill=(90, 40, 30), width=max(2, width // 40))
    draw.ellipse([px[0][0] - 20, px[0][1] - 24, px[0][0] + 20, px[0][1] + 20], fill=(220, 180, 150))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def skeleton_mp4_bytes(tmp, frames: int = 8, fps: int = 8) -> bytes:
    """Drawn skeletons (mostly black frames with coloured limbs), as a skeleton video upload."""
    import av

    path = tmp / "skeleton.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 128, 192, "yuv420p"
        for points in dance_frames(frames, fps):
            image = Image.new("RGB", (128, 192))
            draw = ImageDraw.Draw(image)
            xy = [(x * 128, y * 192) for x, y in points]
            for a, b in ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (1, 11)):
                draw.line([xy[a], xy[b]], fill=(255, 120, 0), width=3)
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()
