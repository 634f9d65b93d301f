"""Job inputs + RenderParams -> model.motion (whose rules tests/model/test_motion.py covers).

Here: each RenderParams field reaches the motion with its API meaning, and one `pose_video` input
is routed by what it shows.
"""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from model.pose.keypoints import PoseInputError
from model.pose.video import write_video
from scripts.demo import demo_keypoints, demo_reference_image, demo_reference_keypoints
from service.jobs.params import RenderParams
from tests.model.test_motion import FakeExtractor
from tests.worker.fakes import skeleton_video_with_sound
from worker.job_inputs import load_motion


@pytest.fixture
def files(tmp_path):
    paths = {"reference_image": tmp_path / "ref.png", "reference_keypoints": tmp_path / "ref.json",
             "pose_keypoints": tmp_path / "motion.json"}
    paths["reference_image"].write_bytes(demo_reference_image(64, 96))
    reference = demo_reference_keypoints()
    person = reference["frames"][0]["people"][0]["pose_keypoints_2d"]
    person[:] = [v * 0.6 if i % 3 != 2 else v for i, v in enumerate(person)]  # someone smaller
    paths["reference_keypoints"].write_text(json.dumps(reference))
    paths["pose_keypoints"].write_text(json.dumps(demo_keypoints(seconds=2.0, fps=30)))
    return paths


def params(**values) -> RenderParams:
    return RenderParams(height=64, width=64, **values)


@pytest.mark.parametrize(("values", "frames", "fps"), [
    ({}, 30, Fraction(15)),  # 60 frames at 30 fps: every 2nd frame, 15 fps
    ({"frame_interval": 3}, 20, Fraction(10)),
    ({"fps": 10.0}, 20, Fraction(10)),  # fps is the OUTPUT rate
    ({"max_duration_s": 1.5}, 22, Fraction(15)),
])
def test_params_set_the_timing(files, values, frames, fps):
    motion = load_motion(files, params(**values))
    assert (len(motion.poses), motion.fps) == (frames, fps)
    assert motion.poses[0:2].shape == (2, 64, 64, 3) and motion.ref_pose.shape == (64, 64, 3)
    assert motion.reference_image.shape == (96, 64, 3)


def test_align_pose_switches_alignment(files):
    aligned = load_motion(files, params()).poses[0:1]
    as_given = load_motion(files, params(align_pose=False)).poses[0:1]
    assert not np.array_equal(aligned, as_given)


def test_keypoints_without_a_rate_play_at_params_fps(files):
    document = demo_keypoints(1.0, 15)
    del document["fps"]
    files["pose_keypoints"].write_text(json.dumps(document))
    with pytest.raises(PoseInputError, match='"fps"'):
        load_motion(files, params())
    assert len(load_motion(files, params(fps=15.0)).poses) == 15


def test_a_skeleton_pose_video_is_used_as_drawn(files, tmp_path):
    frames = np.zeros((12, 96, 64, 3), dtype=np.uint8)
    frames[:, 40:50, 20:40] = (255, 0, 0)
    write_video(tmp_path / "skeleton.mp4", frames, 24)
    del files["pose_keypoints"]
    files["pose_video"] = tmp_path / "skeleton.mp4"
    motion = load_motion(files, params())
    assert (len(motion.poses), motion.fps) == (6, Fraction(12))
    assert motion.poses[0:6].shape == (6, 64, 64, 3)


def test_a_camera_pose_video_goes_to_the_extractor(files, tmp_path):
    write_video(tmp_path / "camera.mp4", np.random.default_rng(0).integers(60, 255, (4, 96, 64, 3), np.uint8), 8)
    del files["pose_keypoints"]
    files["pose_video"] = tmp_path / "camera.mp4"
    with pytest.raises(PoseInputError, match="camera video"):
        load_motion(files, params())
    extractor = FakeExtractor()
    motion = load_motion(files, params(fps=4.0), extractor)
    assert extractor.videos == [(files["pose_video"], 2)]  # 8 fps sampled to the 4 fps asked for
    assert (len(motion.poses), motion.fps) == (2, Fraction(4))


def test_without_reference_keypoints_the_extractor_is_needed(files):
    del files["reference_keypoints"]
    with pytest.raises(PoseInputError, match="reference_keypoints is required"):
        load_motion(files, params())


@pytest.mark.parametrize(("values", "keeps_sound"), [
    ({}, True),  # 30 fps, every 2nd frame: 15 fps, the video's own speed
    ({"fps": 10.0}, True),  # every 3rd frame at 10 fps: still the same speed
    ({"frame_interval": 3, "fps": 10.0}, True),
    ({"fps": 12.0}, False),  # every 2nd frame at 12 fps: 0.8x, the sound would drift
    ({"frame_interval": 2, "fps": 10.0}, False),
])
def test_the_pose_videos_sound_is_kept_only_at_its_own_speed(files, tmp_path, values, keeps_sound):
    del files["pose_keypoints"]
    files["pose_video"] = tmp_path / "dance.mp4"
    skeleton_video_with_sound(files["pose_video"], seconds=1.0, fps=30)
    motion = load_motion(files, params(**values))
    assert motion.audio_source == (files["pose_video"] if keeps_sound else None)
