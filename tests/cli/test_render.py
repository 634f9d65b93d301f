"""`unianimate render --model tiny` end to end: real keypoint loading, real tiny pipeline, real MP4.

The fake-renderer tests (test_longvideo_cli.py) cover argument handling; these prove that the
pieces the CLI wires together (pose package, pipeline, long-video renderer) fit.
"""

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from bench.long_video_memory import synthetic_keypoints
from cli import render as render_cli
from model.longvideo.mp4 import probe_video
from model.pipeline import UNTRAINED_LABEL
from model.pose.video import write_video
from tests.model.longvideo_fakes import decoded_frames

SIZE = 64


def write_job(folder, frames: int, fps: float) -> None:
    """A grey reference photo, its keypoints, and `frames` keypoint frames at `fps`."""
    Image.new("RGB", (48, 72), (120, 110, 100)).save(folder / "ref.png")
    motion = synthetic_keypoints(frames, fps)
    (folder / "poses.json").write_text(json.dumps(motion))
    (folder / "ref.json").write_text(json.dumps({**motion, "frames": motion["frames"][:1]}))


def argv(folder, *extra) -> list[str]:
    return [
        "--reference", str(folder / "ref.png"),
        "--reference-keypoints", str(folder / "ref.json"),
        "--out", str(folder / "out.mp4"),
        "--model", "tiny",
        "--device", "cpu",
        "--height", str(SIZE),
        "--width", str(SIZE),
        "--quiet",
        *extra,
    ]  # fmt: skip


def test_tiny_model_renders_keypoints_to_an_mp4(tmp_path, capsys):
    write_job(tmp_path, frames=14, fps=30)  # sampled every 2nd frame: 7 frames at 15 fps
    # 7 frames in segments of 4: two chained segments
    args = argv(tmp_path, "--pose-keypoints", str(tmp_path / "poses.json"), "--steps", "2",
                "--segment-frames", "4", "--seed", "5")  # fmt: skip
    assert render_cli.main(args) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info.frames, info.fps, info.width, info.height) == (7, 15, SIZE, SIZE)
    assert info.duration_s == pytest.approx(7 / 15, abs=1e-9)
    assert info.metadata["checkpoint"] == UNTRAINED_LABEL
    assert info.metadata["untrained"] == "true" and info.metadata["seed"] == "5"
    captured = capsys.readouterr()
    assert f"using {UNTRAINED_LABEL}" in captured.err
    assert "7 frames at 15 fps, 0.467 s" in captured.out
    frames = np.stack(decoded_frames(tmp_path / "out.mp4")).astype(float)
    assert frames.std() > 1  # the model's frames, not a blank video


def load_motion(folder, *extra):
    return render_cli.load_motion(render_cli.renders(render_cli.build_parser().parse_args(argv(folder, *extra)))[0])


def test_keypoint_flags_reach_the_motion(tmp_path):
    """The timing rules are tested in test_motion.py; here: each flag means what its help says."""
    write_job(tmp_path, frames=60, fps=30)
    reference = json.loads((tmp_path / "ref.json").read_text())
    person = reference["frames"][0]["people"][0]["pose_keypoints_2d"]
    person[:] = [v * 0.6 if i % 3 != 2 else v for i, v in enumerate(person)]  # someone smaller
    (tmp_path / "ref.json").write_text(json.dumps(reference))
    poses = ["--pose-keypoints", str(tmp_path / "poses.json")]
    motion = load_motion(tmp_path, *poses, "--frame-interval", "3", "--max-duration", "1.5")
    assert (motion.fps, len(motion.poses), motion.audio_source) == (Fraction(10), 15, None)
    assert motion.reference_image.shape == (72, 48, 3)  # as sent; the renderer resizes it
    assert motion.ref_pose.shape == (SIZE, SIZE, 3) and motion.ref_pose.any()
    as_given = load_motion(tmp_path, *poses, "--no-align")
    assert not np.array_equal(motion.poses[0:1], as_given.poses[0:1])


def test_fps_is_the_rate_of_keypoints_that_do_not_state_one(tmp_path, capsys):
    write_job(tmp_path, frames=60, fps=30)
    document = json.loads((tmp_path / "poses.json").read_text())
    del document["fps"]
    (tmp_path / "poses.json").write_text(json.dumps(document))
    motion = load_motion(tmp_path, "--pose-keypoints", str(tmp_path / "poses.json"), "--fps", "24")
    assert (motion.fps, len(motion.poses)) == (Fraction(12), 30)  # sampled like a 24 fps source
    assert render_cli.main(argv(tmp_path, "--pose-keypoints", str(tmp_path / "poses.json"))) == 2
    err = capsys.readouterr().err
    assert "poses.json: the pose keypoints do not say their frame rate: give --fps" in err  # the CLI's words


def test_a_pose_video_is_a_skeleton_video_read_lazily(tmp_path):
    write_job(tmp_path, frames=1, fps=30)
    skeletons = [np.full((96, 64, 3), 8 * i, np.uint8) for i in range(31)]
    write_video(tmp_path / "skeleton.mp4", skeletons, 30, crf=0)
    motion = load_motion(tmp_path, "--pose-video", str(tmp_path / "skeleton.mp4"))
    assert (motion.fps, len(motion.poses), motion.audio_source) == (15, 16, tmp_path / "skeleton.mp4")
    poses = motion.poses[0:16]
    assert poses.shape == (16, SIZE, SIZE, 3)
    np.testing.assert_allclose(poses.mean(axis=(1, 2, 3)), 16 * np.arange(16), atol=2)


def test_an_unreadable_reference_is_reported_before_any_model_loads(tmp_path, capsys, monkeypatch):
    write_job(tmp_path, frames=4, fps=30)
    (tmp_path / "ref.png").write_bytes(b"not an image")
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: pytest.fail("loaded a model"))
    assert render_cli.main(argv(tmp_path, "--pose-keypoints", str(tmp_path / "poses.json"))) == 2
    assert "the reference image is not a readable PNG, JPEG or WebP file" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


def test_camera_footage_as_a_pose_video_needs_extract_poses(tmp_path, capsys, monkeypatch):
    """Used as drawn skeletons, a camera video would condition the model on a photo of a room."""
    write_job(tmp_path, frames=1, fps=30)
    rng = np.random.default_rng(0)
    footage = [rng.integers(60, 200, (96, 64, 3), dtype=np.uint8) for _ in range(4)]
    write_video(tmp_path / "camera.mp4", footage, 30, crf=0)
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: pytest.fail("loaded a model"))
    assert render_cli.main(argv(tmp_path, "--pose-video", str(tmp_path / "camera.mp4"))) == 2
    err = capsys.readouterr().err
    assert "unianimate render: error: --pose-video" in err and "looks like camera footage" in err
    assert "add --extract-poses" in err and not (tmp_path / "out.mp4").exists()


def test_conditions_pick_the_originals_sets_and_their_noise_prior(tmp_path, capsys):
    write_job(tmp_path, frames=4, fps=15)
    poses = ["--pose-keypoints", str(tmp_path / "poses.json"), "--steps", "1", "--seed", "3"]
    parser = render_cli.build_parser()
    default = render_cli.render_options(parser.parse_args(argv(tmp_path, *poses)), (SIZE, SIZE))
    assert (default.conditions, default.sampling.noise_prior_t) == ("chained", 939)
    original = parser.parse_args(argv(tmp_path, *poses, "--conditions", "image,local_image,dwpose"))
    options = render_cli.render_options(original, (SIZE, SIZE))
    assert (options.conditions, options.sampling.noise_prior_t) == ("image,local_image,dwpose", 949)
    with pytest.raises(SystemExit):
        parser.parse_args(argv(tmp_path, *poses, "--conditions", "image,dwpose"))
    (tmp_path / "first.png").write_bytes((tmp_path / "ref.png").read_bytes())
    assert render_cli.main(argv(tmp_path, *poses, "--conditions", "image,randomref,dwpose",
                                "--first-frame", str(tmp_path / "first.png"))) == 2
    assert "--first-frame needs --conditions chained" in capsys.readouterr().err
    videos = {}
    for conditions in ("chained", "image,local_image,dwpose", "image,randomref,dwpose"):
        assert render_cli.main(argv(tmp_path, *poses, "--conditions", conditions)) == 0
        videos[conditions] = np.stack(decoded_frames(tmp_path / "out.mp4")).astype(int)
    # each set conditions the model differently (chained and image,randomref,dwpose differ by the prior)
    assert not np.array_equal(videos["chained"], videos["image,randomref,dwpose"])
    assert not np.array_equal(videos["image,local_image,dwpose"], videos["image,randomref,dwpose"])
