"""The parts of `unianimate render` that do not need the real pipeline or the pose package:
argument handling, option mapping, pose-video reading and the render-to-MP4 path."""

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from cli import render as render_cli
from model.checkpoints import OPEN_CLIP_FILE, SD21_FILE, UNET_FILE
from model.longvideo.mp4 import Mp4Writer, probe_video
from model.longvideo.video_frames import VideoPoseFrames
from model.motion import Motion
from tests.model.longvideo_fakes import FakeRenderer, pose_frames

H, W = 16, 32  # the tiny model's frame sides are multiples of 16


def argv(tmp_path, *extra):
    return [
        "--reference",
        str(tmp_path / "ref.png"),
        "--pose-keypoints",
        str(tmp_path / "poses.json"),
        "--out",
        str(tmp_path / "out.mp4"),
        "--model",
        "tiny",
        "--height",
        str(H),
        "--width",
        str(W),
        "--quiet",
        *extra,
    ]


def test_options_follow_the_arguments(tmp_path):
    args = render_cli.build_parser().parse_args(
        argv(
            tmp_path,
            "--steps",
            "7",
            "--seed",
            "9",
            "--guidance",
            "3.5",
            "--mode",
            "window",
            "--segment-frames",
            "16",
            "--context-size",
            "16",
            "--context-overlap",
            "4",
            "--context-batch-size",
            "2",
            "--crf",
            "23",
            "--no-align",
            "--device",
            "cpu",
            "--dtype",
            "bf16",
        )
    )
    options = render_cli.render_options(args, (args.height, args.width))
    assert (options.height, options.width, options.mode, options.segment_frames) == (H, W, "window", 16)
    assert (options.sampling.steps, options.sampling.seed, options.sampling.guidance_scale) == (7, 9, 3.5)
    assert (options.context_size, options.context_overlap, options.context_batch_size, options.crf) == (
        16,
        4,
        2,
        23,
    )
    assert (args.align, args.device, args.dtype, args.pose_video) == (False, "cpu", "bf16", None)


@pytest.mark.parametrize(
    "drop, add",
    [
        ("--pose-keypoints", []),  # no motion at all
        (None, ["--pose-video", "x.mp4"]),  # two kinds of motion
        ("--model", []),  # no model
        (None, ["--checkpoint-dir", "ckpt"]),  # two models
        (None, ["--mode", "loop"]),
    ],
)
def test_incomplete_or_conflicting_arguments_are_refused(tmp_path, capsys, drop, add):
    args = argv(tmp_path, *add)
    if drop:
        i = args.index(drop)
        del args[i : i + 2]
    with pytest.raises(SystemExit) as exit_:
        render_cli.build_parser().parse_args(args)
    assert exit_.value.code == 2


@pytest.fixture
def fake_job(tmp_path, monkeypatch):
    """The CLI with the pipeline and the pose package replaced by test doubles."""
    Image.fromarray(np.full((40, 30, 3), 120, np.uint8)).save(tmp_path / "ref.png")
    renderer = FakeRenderer()
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: renderer)
    reference = np.full((40, 30, 3), 120, np.uint8)
    motion = Motion(reference, np.zeros((H, W, 3), np.uint8), pose_frames(40, H, W), Fraction(15))
    monkeypatch.setattr(render_cli, "load_motion", lambda args: motion)
    return renderer


def test_main_renders_the_mp4(tmp_path, fake_job, capsys):
    assert render_cli.main(argv(tmp_path, "--steps", "2", "--segment-frames", "8")) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info.frames, info.fps, info.duration_s) == (40, 15, pytest.approx(40 / 15))
    assert info.metadata["checkpoint"] == FakeRenderer.label
    assert "40 frames at 15 fps" in capsys.readouterr().out
    assert len(fake_job.calls) == 6  # 40 frames in 8-frame segments sharing one frame


def test_main_says_what_is_wrong_with_the_first_frame(tmp_path, fake_job, capsys):
    (tmp_path / "first.png").write_bytes(b"not an image")
    assert render_cli.main(argv(tmp_path, "--first-frame", str(tmp_path / "first.png"))) == 2
    assert "--first-frame" in (err := capsys.readouterr().err) and "not a readable PNG" in err
    assert not (tmp_path / "out.mp4").exists()


def test_interrupt_leaves_no_file(tmp_path, fake_job, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake_job, "denoise_segment", interrupt)  # the chain denoises, then decodes
    assert render_cli.main(argv(tmp_path)) == 130
    assert "canceled" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["ref.png"]


def write_skeleton_video(path, frames: int, fps: int) -> None:
    with Mp4Writer(path, fps=fps, width=32, height=48, crf=0) as writer:
        for i in range(frames):
            writer.write(np.full((48, 32, 3), 8 * i, np.uint8))


def test_pose_video_frames_are_sampled_resized_and_read_per_segment(tmp_path):
    path = tmp_path / "skeleton.mp4"
    write_skeleton_video(path, 31, 30)
    poses = VideoPoseFrames(path, frame_interval=2, height=H, width=W)
    assert len(poses) == 16  # source frames 0, 2, ..., 30
    first, second = poses[0:8], poses[7:16]  # chained segments share a frame
    assert first.shape == (8, H, W, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first[-1], second[0])
    means = np.concatenate([first, second[1:]]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, 16 * np.arange(16), atol=2)
    np.testing.assert_array_equal(poses[2:4], first[2:4])  # going back re-reads the file
    assert len(VideoPoseFrames(path, frame_interval=2, height=H, width=W, max_frames=5)) == 5


def test_main_refuses_an_output_folder_that_does_not_exist(tmp_path, fake_job, capsys):
    args = argv(tmp_path)
    args[args.index("--out") + 1] = str(tmp_path / "missing" / "out.mp4")
    assert render_cli.main(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_progress_bar_shows_segments_and_frames(tmp_path, fake_job, capsys):
    args = [a for a in argv(tmp_path, "--steps", "2", "--segment-frames", "8") if a != "--quiet"]
    assert render_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "segment 6/6 step 2/2" in err and "frames 40/40" in err
    assert "fake test renderer" in err  # an untrained model is named as such


def with_model(args: list[str], *model: str, size: int = H) -> list[str]:
    """`args` with `--model tiny` replaced by `model` and both frame sides set to `size`."""
    i = args.index("--model")
    args = [*args[:i], *model, *args[i + 2 :]]
    for flag in ("--height", "--width"):
        args[args.index(flag) + 1] = str(size)
    return args


@pytest.fixture
def nothing_loads(monkeypatch):
    """Any use of the inputs or the model fails the test: the refusal must come before them."""
    monkeypatch.setattr(render_cli, "load_motion", lambda args: pytest.fail("read the inputs"))
    monkeypatch.setattr(render_cli, "load_renderer", lambda args: pytest.fail("loaded a model"))


def assert_refused(tmp_path, capsys, args, message) -> None:
    assert render_cli.main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("unianimate render: error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--segment-frames", "1"], "--segment-frames must be at least 2"),
        (["--crf", "99"], "--crf must be between 0 and 51"),
        (["--steps", "0"], "--steps must be between 1 and 1000"),
        (["--noise-prior-t", "5000"], "--noise-prior-t must be between 0 and 999"),
        (["--seed", "-1"], "--seed must be between 0 and 9223372036854775807"),
        (["--guidance", "nan"], "--guidance must be at least 0"),
        (["--guidance", "inf"], "--guidance must be at least 0, got inf"),
        (["--frame-interval", "0"], "--frame-interval must be at least 1"),
        (["--context-batch-size", "0"], "--context-batch-size must be at least 1"),
        (["--fps", "0"], "--fps must be a positive number"),
        (["--max-duration", "-2"], "--max-duration must be a positive number"),
        (
            ["--height", "40"],
            "--height 40 --width 32: the tiny model needs multiples of 16 (e.g. --height 48 --width 32)",
        ),
        (
            ["--width", "8"],
            "--height 16 --width 8: the tiny model needs multiples of 16 (e.g. --height 16 --width 16)",
        ),
        (["--mode", "window", "--first-frame", "first.png"], "--first-frame needs --mode chain"),
        (["--context-size", "4", "--context-overlap", "4"], "--context-overlap (4) must be smaller than"),
        (["--extract-poses"], "--extract-poses detects the poses of a --pose-video"),
    ],
)
def test_bad_values_are_refused_before_anything_loads(tmp_path, capsys, nothing_loads, extra, message):
    assert_refused(tmp_path, capsys, argv(tmp_path, *extra), message)


def test_the_released_model_needs_multiples_of_64(tmp_path, capsys, nothing_loads):
    (tmp_path / "ckpt").mkdir()
    args = with_model(argv(tmp_path), "--checkpoint-dir", str(tmp_path / "ckpt"), size=96)
    assert_refused(tmp_path, capsys, args, "the released model needs multiples of 64 (e.g. --height 128")


def test_a_missing_checkpoint_dir_is_refused_before_anything_loads(tmp_path, capsys, nothing_loads):
    args = with_model(argv(tmp_path), "--checkpoint-dir", str(tmp_path / "nonexistent"), size=64)
    assert_refused(
        tmp_path, capsys, args, f"--checkpoint-dir: checkpoint directory {tmp_path / 'nonexistent'}"
    )


def test_cuda_without_a_cuda_device_is_refused(tmp_path, capsys, nothing_loads, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = argv(tmp_path, "--device", "cuda")
    assert_refused(
        tmp_path, capsys, args, "--device cuda: PyTorch finds no CUDA device here; use --device cpu"
    )


def test_a_damaged_checkpoint_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    """The real load_renderer, reading files that are there but are not checkpoints."""
    poses = pose_frames(3, 64, 64)
    motion = Motion(np.full((40, 30, 3), 120, np.uint8), np.zeros((64, 64, 3), np.uint8), poses, Fraction(15))
    monkeypatch.setattr(render_cli, "load_motion", lambda args: motion)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in (UNET_FILE, SD21_FILE, OPEN_CLIP_FILE):
        (folder / name).write_bytes(b"not a checkpoint")
    args = with_model(argv(tmp_path, "--device", "cpu"), "--checkpoint-dir", str(folder), size=64)
    assert_refused(tmp_path, capsys, args, f"{folder / UNET_FILE} is damaged")


def test_bad_input_found_while_rendering_is_an_error_not_a_traceback(tmp_path, capsys, fake_job, monkeypatch):
    def undecodable(*args, **kwargs):
        raise ValueError("the video could not be decoded; re-encode it")

    monkeypatch.setattr(fake_job, "denoise_segment", undecodable)
    assert_refused(tmp_path, capsys, argv(tmp_path), "the video could not be decoded; re-encode it")
    assert [p.name for p in tmp_path.iterdir()] == ["ref.png"]
