"""`unianimate render` with several --reference: one MP4 per person, the motion read once, one model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.long_video_memory import synthetic_keypoints
from cli import render as render_cli
from model.longvideo.mp4 import probe_video
from tests.model.longvideo_fakes import decoded_frames

SIZE = 64


def write_people(folder, count: int, frames: int = 10, fps: float = 15) -> list[str]:
    """`count` differently coloured photos with their keypoints, and one motion."""
    motion = synthetic_keypoints(frames, fps)
    (folder / "poses.json").write_text(json.dumps(motion))
    flags = []
    for index in range(count):
        Image.new("RGB", (48, 72), (40 + 60 * index, 110, 200 - 50 * index)).save(folder / f"person{index}.png")
        (folder / f"person{index}.json").write_text(json.dumps({**motion, "frames": motion["frames"][:1]}))
        flags += ["--reference", str(folder / f"person{index}.png")]
    for index in range(count):
        flags += ["--reference-keypoints", str(folder / f"person{index}.json")]
    return flags


def common(folder, *extra) -> list[str]:
    return ["--pose-keypoints", str(folder / "poses.json"), "--model", "tiny", "--device", "cpu",
            "--height", str(SIZE), "--width", str(SIZE), "--steps", "2", "--segment-frames", "4", "--quiet", *extra]


def test_one_video_per_reference_with_one_model_and_one_motion_read(tmp_path, capsys, monkeypatch):
    (tmp_path / "out").mkdir()
    loads, motions = [], []
    load_renderer, prepare_motion = render_cli.load_renderer, render_cli.prepare_motion
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: loads.append(1) or load_renderer(args))
    monkeypatch.setattr(render_cli, "prepare_motion", lambda **kw: motions.append(kw) or prepare_motion(**kw))

    assert render_cli.main([*write_people(tmp_path, 2), *common(tmp_path, "--out", str(tmp_path / "out"))]) == 0
    assert len(loads) == 1, "the model loads once"
    assert [m["reference_image"].name for m in motions] == ["person0.png", "person1.png"]
    assert [m["reference_keypoints"].name for m in motions] == ["person0.json", "person1.json"]
    assert isinstance(motions[0]["pose_keypoints"], bytes) and motions[0]["pose_keypoints"] is motions[1]["pose_keypoints"]
    videos = [tmp_path / "out" / "person0.mp4", tmp_path / "out" / "person1.mp4"]
    assert [probe_video(path).frames for path in videos] == [10, 10]
    first, second = (np.stack(decoded_frames(path)).astype(float) for path in videos)
    assert np.abs(first - second).mean() > 1, "each video animates its own reference"
    out = capsys.readouterr().out
    assert all(f"{path}: 10 frames" in out for path in videos)


class Detector:
    def __init__(self) -> None:
        self.videos = 0

    def extract_video(self, path, interval):
        self.videos += 1
        return ("poses of", str(path), interval)

    def extract_image(self, image):
        return ("pose of", image.shape)


def test_a_driving_videos_poses_are_detected_once():
    detector = Detector()
    once = render_cli.DetectOnce(detector)
    assert once.extract_video("dance.mp4", 2) is once.extract_video("dance.mp4", 2)
    assert detector.videos == 1
    assert once.extract_image(np.zeros((4, 3, 3))) == ("pose of", (4, 3, 3))


@pytest.mark.parametrize(("out", "expected"), [
    ("{stem}-dance.mp4", ["person0-dance.mp4", "person1-dance.mp4", "person2-dance.mp4"]),
    ("take-{index}.mp4", ["take-0.mp4", "take-1.mp4", "take-2.mp4"]),
])
def test_out_patterns(tmp_path, out, expected):
    args = render_cli.build_parser().parse_args([*write_people(tmp_path, 3), *common(tmp_path, "--out",
                                                                                       str(tmp_path / out))])
    assert render_cli.output_paths(args) == [tmp_path / name for name in expected]


def test_same_names_in_a_folder_get_their_index(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "me.png")
    args = render_cli.build_parser().parse_args(["--reference", str(tmp_path / "a" / "me.png"), "--reference",
                                                 str(tmp_path / "b" / "me.png"), "--pose-keypoints", "x.json",
                                                 "--model", "tiny", "--out", str(tmp_path)])
    assert render_cli.output_paths(args) == [tmp_path / "me-0.mp4", tmp_path / "me-1.mp4"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--out", "{name}.mp4"], "a pattern may name only {index} and {stem}"),
    (["--out", "same.mp4"], "give an existing folder"),
    (["--out", "fixed-{index}.mp4", "--reference-keypoints", "extra.json"], "got 3 for 2 --reference"),
    (["--out", "x-{index}.mp4", "--first-frame", "first.png"], "render each --reference on its own"),
])
def test_bad_reference_flags_are_refused_before_anything_loads(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: pytest.fail("loaded a model"))
    assert render_cli.main([*write_people(tmp_path, 2), *common(tmp_path, *extra)]) == 2
    assert message in capsys.readouterr().err
