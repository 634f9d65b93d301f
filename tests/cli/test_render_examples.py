"""`unianimate render` on examples/: OpenPose pixels with no canvas and no fps, the rate from --fps.
Only --height is given, so the width comes from the reference photo's aspect ratio."""
from __future__ import annotations

import math

from PIL import Image

from cli import render as render_cli
from model.longvideo.mp4 import probe_video
from tests.test_examples import EXAMPLES

FPS, HEIGHT, SECONDS = 15, 96, 1


def test_render_openpose_pixels_with_fps_flag_keeps_the_photo_aspect(tmp_path, capsys):
    out = tmp_path / "dance.mp4"
    args = [
        "--reference", str(EXAMPLES / "person.png"),
        "--reference-keypoints", str(EXAMPLES / "person_keypoints.json"),
        "--pose-keypoints", str(EXAMPLES / "dance_openpose.json"),
        "--fps", str(FPS), "--out", str(out), "--model", "tiny", "--device", "cpu",
        "--height", str(HEIGHT), "--steps", "2", "--segment-frames", "8", "--max-duration", str(SECONDS), "--quiet",
    ]  # fmt: skip
    assert render_cli.main(args) == 0, capsys.readouterr().err
    info = probe_video(out)
    with Image.open(EXAMPLES / "person.png") as photo:
        photo_width, photo_height = photo.size
    assert info.height == HEIGHT
    assert info.width * photo_height == info.height * photo_width  # the photo's aspect, exactly
    assert (info.frames, info.fps) == (math.floor(SECONDS * FPS), FPS)


def test_without_fps_the_error_names_the_flag(tmp_path, capsys):
    args = [
        "--reference", str(EXAMPLES / "person.png"),
        "--reference-keypoints", str(EXAMPLES / "person_keypoints.json"),
        "--pose-keypoints", str(EXAMPLES / "dance_dwpose.json"),
        "--out", str(tmp_path / "dance.mp4"), "--model", "tiny", "--device", "cpu", "--height", str(HEIGHT),
    ]  # fmt: skip
    assert render_cli.main(args) == 2
    assert "--fps" in capsys.readouterr().err
