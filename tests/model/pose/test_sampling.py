"""Frame sampling to the target fps and One-Euro smoothing."""
from __future__ import annotations

import numpy as np
import pytest

from model.pose.formats import parse_pose_json
from model.pose.inputs import load_pose_input
from model.pose.keypoints import PoseInputError
from model.pose.sampling import one_euro_filter, resample, resolve_frame_interval, smooth
from model.pose.video import iter_video_frames, load_skeleton_video
from tests.model.pose.conftest import encode_video, numbered_frames, openpose_people


def test_thirty_fps_keypoints_with_interval_two_give_half_the_frames():
    seq = parse_pose_json(openpose_people(10), canvas_width=512, canvas_height=768, fps=30)
    half = resample(seq, 2)
    assert half.num_frames == 5 and half.fps == 15.0
    np.testing.assert_allclose(half.timestamps, [0, 2 / 30, 4 / 30, 6 / 30, 8 / 30])
    np.testing.assert_array_equal(half.body, seq.body[::2])


def test_default_interval_brings_keypoints_to_fifteen_fps_or_less():
    seq = load_pose_input(b'{"fps": 60, "frames": [{"people": []}, {"people": []}, {"people": []}, '
                          b'{"people": []}, {"people": []}]}', "keypoints")
    assert seq.fps == 15.0 and seq.num_frames == 2


def test_keypoints_without_fps_take_every_nth_frame():
    seq = load_pose_input(b'[{"people": []}, {"people": []}, {"people": []}]', "keypoints", frame_interval=2)
    assert seq.num_frames == 2 and seq.fps is None


def test_thirty_fps_video_with_interval_two(tmp_path):
    path = tmp_path / "motion.mp4"
    encode_video(path, numbered_frames(10), 30)
    kept = list(iter_video_frames(path, 2))
    assert [index for index, _, _ in kept] == [0, 2, 4, 6, 8]
    np.testing.assert_allclose([t for _, t, _ in kept], [0, 2 / 30, 4 / 30, 6 / 30, 8 / 30])
    video = load_skeleton_video(path, 2)
    assert video.num_frames == 5 and video.fps == 15.0 and video.source_fps == 30.0
    np.testing.assert_allclose(video.timestamps, [0, 1 / 15, 2 / 15, 3 / 15, 4 / 15])
    brightness = video.frames.reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(brightness, [0, 20, 40, 60, 80], atol=3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_frame_interval(bad):
    with pytest.raises(PoseInputError, match="frame_interval"):
        resolve_frame_interval(30.0, bad)


def test_one_euro_reduces_jitter_and_follows_steps():
    rng = np.random.default_rng(0)
    frames = 120
    truth = np.where(np.arange(frames) < 60, 0.3, 0.6)[:, None, None] * np.ones((frames, 1, 2))
    noisy = truth + rng.normal(0, 0.01, truth.shape)
    present = np.ones((frames, 1), bool)
    smoothed = one_euro_filter(noisy, present, fps=30, min_cutoff=1.0, beta=0.5)
    steady = slice(20, 60)
    assert np.abs(smoothed[steady] - truth[steady]).std() < 0.5 * np.abs(noisy[steady] - truth[steady]).std()
    assert np.abs(smoothed[100:] - 0.6).max() < 0.02  # it settles on the new position


def test_one_euro_leaves_missing_points_and_restarts_after_gaps():
    values = np.array([[[0.0, 0.0]], [[1.0, 1.0]], [[0.5, 0.5]], [[0.9, 0.9]]])
    present = np.array([[True], [True], [False], [True]])
    out = one_euro_filter(values, present, fps=30)
    assert out[0].tolist() == [[0.0, 0.0]]
    assert 0.0 < out[1, 0, 0] < 1.0  # filtered towards the previous value
    assert out[2].tolist() == [[0.5, 0.5]]  # missing: untouched
    assert out[3].tolist() == [[0.9, 0.9]]  # back after a gap: the filter restarts there


def test_smooth_keeps_presence_and_needs_fps():
    seq = parse_pose_json(openpose_people(4), canvas_width=512, canvas_height=768, fps=30)
    smoothed = smooth(seq, beta=0.1)
    np.testing.assert_array_equal(smoothed.body_present, seq.body_present)
    assert not np.array_equal(smoothed.body, seq.body)
    with pytest.raises(PoseInputError, match="fps"):
        smooth(seq.replace(fps=None))
