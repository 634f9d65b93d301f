"""Writes examples/: a drawn person, her keypoints, and a short dance in the common keypoint formats.

    .venv/bin/python scripts/make_examples.py           # (re)write the files in examples/
    .venv/bin/python scripts/make_examples.py --check   # exit 1 if examples/ differs from what it would write

Everything is drawn and computed here, deterministically: no third-party image or recording. The photo
is a simple figure (person.png, 256x384); the dance (4 s at 15 fps) sways the hips, bounces the knees
and waves both arms. The dance is written as a dancer filmed in a 512x768 video would be, in the forms
people actually have: OpenPose's per-frame documents in pixels without a canvas size or fps (as
OpenPose writes them), and the DWPose layout of the original (normalised coordinates).
`scripts/demo.py` and the tests draw their in-memory inputs with the same functions.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO_WIDTH, PHOTO_HEIGHT = 256, 384
# The pixel space of the dance: the video OpenPose would have run on. The files do not state it.
DANCE_WIDTH, DANCE_HEIGHT = 512, 768
DANCE_FPS, DANCE_SECONDS = 15, 4.0
CONFIDENCE = 0.9
# Share of pixels that may differ from a fresh drawing in --check (another Pillow may rasterise an edge
# differently; a changed drawing differs in far more).
PIXEL_TOLERANCE = 0.005

# OpenPose body-18 points of the person standing, in pixels of a 512x768 picture.
STANDING = {
    0: (256, 150), 1: (256, 220), 2: (206, 222), 3: (186, 310), 4: (178, 390), 5: (306, 222), 6: (326, 310),
    7: (334, 390), 8: (226, 400), 9: (222, 520), 10: (220, 640), 11: (286, 400), 12: (290, 520), 13: (292, 640),
    14: (244, 138), 15: (268, 138), 16: (230, 146), 17: (282, 146),
}
LIMBS = [(1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0)]
# How much of the hip sway and knee bounce each point follows: the feet stay planted.
_FOLLOW = {10: 0.0, 13: 0.0, 9: 0.5, 12: 0.5}


def wave_pose(t: float) -> dict[int, tuple[float, float]]:
    """The standing person at time `t` seconds with both arms swinging from down to raised, once a second."""
    points = dict(STANDING)
    lift = (1 - math.cos(2 * math.pi * t)) / 2  # 0 (arms down) .. 1 (arms raised)
    upper, lower = math.radians(10 + 150 * lift), math.radians(20 + 160 * lift)  # angles from straight down
    for shoulder, elbow, wrist, side in ((2, 3, 4, -1), (5, 6, 7, 1)):
        sx, sy = points[shoulder]
        ex, ey = sx + side * 90 * math.sin(upper), sy + 90 * math.cos(upper)
        points[elbow] = (ex, ey)
        points[wrist] = (ex + side * 80 * math.sin(lower), ey + 80 * math.cos(lower))
    return points


def dance_pose(t: float) -> dict[int, tuple[float, float]]:
    """The dance at `t` seconds (512x768 pixels): the wave, a hip sway every 2 s and a knee bounce twice a second."""
    sway = 36 * math.sin(math.pi * t)
    bounce = 14 * (1 - math.cos(4 * math.pi * t)) / 2
    return {k: (x + sway * _FOLLOW.get(k, 1.0), y + bounce * _FOLLOW.get(k, 1.0))
            for k, (x, y) in wave_pose(t).items()}


def openpose_frame(points: dict[int, tuple[float, float]], scale: float = 1.0) -> dict:
    """One frame as OpenPose writes it (`--write_json`): pixels, one person, no canvas size."""
    flat = [v for k in range(18) for v in (round(points[k][0] * scale, 1), round(points[k][1] * scale, 1),
                                            CONFIDENCE)]
    person = {"person_id": [-1], "pose_keypoints_2d": flat, "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
              "hand_right_keypoints_2d": [], "pose_keypoints_3d": [], "face_keypoints_3d": [],
              "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": []}
    return {"version": 1.3, "people": [person]}


def dwpose_frame(points: dict[int, tuple[float, float]], width: int, height: int) -> dict:
    """One frame in the original's DWPose layout: body only, coordinates divided by the canvas size."""
    candidate = [[round(points[k][0] / width, 4), round(points[k][1] / height, 4)] for k in range(18)]
    return {"bodies": {"candidate": candidate, "subset": [[float(k) for k in range(18)]]}}


def dance_times(seconds: float = DANCE_SECONDS, fps: float = DANCE_FPS) -> list[float]:
    return [i / fps for i in range(max(1, round(seconds * fps)))]


def person_image(width: int = PHOTO_WIDTH, height: int = PHOTO_HEIGHT) -> Image.Image:
    """The person standing (`wave_pose(0)`) in front of a wall, drawn at `width` x `height`."""
    sx, sy = width / DANCE_WIDTH, height / DANCE_HEIGHT
    p = {k: (x * sx, y * sy) for k, (x, y) in wave_pose(0.0).items()}
    unit = min(sx, sy)  # line widths follow the smaller scale

    image = Image.new("RGB", (width, height), (214, 206, 190))
    draw = ImageDraw.Draw(image)
    floor = round(height * 0.80)
    draw.rectangle([0, floor, width, height], fill=(150, 122, 96))
    draw.ellipse([p[10][0] - 40 * sx, p[10][1] + 14 * sy, p[13][0] + 40 * sx, p[13][1] + 34 * sy], fill=(122, 98, 78))

    def limb(a: int, b: int, colour: tuple[int, int, int], thickness: float) -> None:
        draw.line([p[a], p[b]], fill=colour, width=max(1, round(thickness * unit)))
        for point in (p[a], p[b]):  # round joints
            r = thickness * unit / 2
            draw.ellipse([point[0] - r, point[1] - r, point[0] + r, point[1] + r], fill=colour)

    trousers, shirt, skin, hair = (46, 58, 92), (196, 64, 52), (232, 188, 156), (58, 40, 30)
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):
        limb(hip, knee, trousers, 34)
        limb(knee, ankle, trousers, 30)
        x, y = p[ankle]
        draw.ellipse([x - 22 * sx, y - 4 * sy, x + 26 * sx, y + 20 * sy], fill=(30, 30, 34))  # shoes
    limb(1, 0, skin, 22)  # neck
    draw.polygon([p[2], p[5], (p[11][0] + 10 * sx, p[11][1]), (p[8][0] - 10 * sx, p[8][1])], fill=shirt)
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        limb(shoulder, elbow, shirt, 28)
        limb(elbow, wrist, skin, 20)
        x, y = p[wrist]
        draw.ellipse([x - 13 * sx, y - 10 * sy, x + 13 * sx, y + 18 * sy], fill=skin)  # hands
    x, y = p[0]
    draw.ellipse([x - 40 * sx, y - 58 * sy, x + 40 * sx, y + 30 * sy], fill=hair)
    draw.ellipse([x - 34 * sx, y - 44 * sy, x + 34 * sx, y + 42 * sy], fill=skin)
    draw.chord([x - 38 * sx, y - 62 * sy, x + 38 * sx, y - 2 * sy], 180, 360, fill=hair)
    for eye in (14, 15):
        ex, ey = p[eye]
        draw.ellipse([ex - 4 * sx, ey - 3 * sy, ex + 4 * sx, ey + 3 * sy], fill=(40, 30, 30))
    draw.arc([x - 14 * sx, y + 8 * sy, x + 14 * sx, y + 26 * sy], 20, 160, fill=(150, 70, 70), width=max(1, round(3 * unit)))
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _frames_json(frames: list[dict]) -> str:
    """A JSON list, one compact frame per line: small, and a diff shows which frame changed."""
    return "[\n" + ",\n".join(json.dumps(frame, separators=(",", ":")) for frame in frames) + "\n]\n"


def example_documents() -> dict[str, str]:
    """The keypoint files of examples/, by name, as the text written there."""
    photo_scale = PHOTO_WIDTH / DANCE_WIDTH  # the photo is the 512x768 picture at half size
    times = dance_times()
    return {
        "person_keypoints.json": json.dumps(openpose_frame(wave_pose(0.0), photo_scale), separators=(",", ":"))
        + "\n",
        "dance_openpose.json": _frames_json([openpose_frame(dance_pose(t)) for t in times]),
        "dance_dwpose.json": _frames_json([dwpose_frame(dance_pose(t), DANCE_WIDTH, DANCE_HEIGHT) for t in times]),
    }


def write_examples(folder: Path = EXAMPLES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "person.png"]
    written[0].write_bytes(png_bytes(person_image()))
    for name, text in example_documents().items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


def differences(folder: Path = EXAMPLES) -> list[str]:
    """What in `folder` differs from what `write_examples` would write (empty: nothing)."""
    problems = []
    for name, text in example_documents().items():
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            problems.append(f"{path} differs from what scripts/make_examples.py writes")
    photo = folder / "person.png"
    try:
        with Image.open(photo) as opened:
            committed = np.asarray(opened.convert("RGB"))
    except OSError:
        return [*problems, f"{photo} is missing or not a PNG"]
    fresh = np.asarray(person_image())
    if committed.shape != fresh.shape or (committed != fresh).any(axis=-1).mean() > PIXEL_TOLERANCE:
        problems.append(f"{photo} differs from the drawing scripts/make_examples.py makes")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare examples/ with what would be written")
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="the folder (default: examples/)")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in write_examples(args.out):
        print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
