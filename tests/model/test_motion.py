"""Motion inputs -> reference image, reference pose, driving poses at the output rate (model.motion)."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from model.motion import frame_timing, is_skeleton_video, looks_like_skeleton, max_frames, prepare_motion
from model.pose.formats import parse_pose_json
from model.pose.keypoints import PoseInputError
from model.pose.video import probe_video, write_video
from scripts.demo import demo_keypoints, demo_reference_image, demo_reference_keypoints

SIZE = 64


def motion_json(frames: int = 60, fps: float | None = 30) -> bytes:
    """`frames` keypoint frames of the demo dance, stating `fps` (or no rate when None)."""
    document = demo_keypoints(seconds=frames / 30, fps=30)
    del document["fps"]
    if fps is not None:
        document["fps"] = fps
    return json.dumps(document).encode()


def prepare(**inputs):
    inputs.setdefault("reference_image", demo_reference_image(64, 96))
    inputs.setdefault("reference_keypoints", json.dumps(demo_reference_keypoints()).encode())
    if not {"pose_keypoints", "skeleton_video", "driving_video"} & inputs.keys():
        inputs["pose_keypoints"] = motion_json()
    return prepare_motion(height=SIZE, width=SIZE, **inputs)


@pytest.mark.parametrize(("source_fps", "timing", "frames", "fps"), [
    (30, {}, 30, Fraction(15)),  # the default: every 2nd frame, 15 fps or less
    (30, {"frame_interval": 3}, 20, Fraction(10)),
    (30, {"output_fps": 10}, 20, Fraction(10)),  # the interval closest to 30 / 10
    (30, {"output_fps": 24, "frame_interval": 2}, 30, Fraction(24)),  # played faster than sent
    (25, {}, 30, Fraction(25, 2)),
    (12, {}, 60, Fraction(12)),
    (30000 / 1001, {}, 30, Fraction(15000, 1001)),  # NTSC stays exact
])
def test_keypoints_are_sampled_at_the_output_rate(source_fps, timing, frames, fps):
    motion = prepare(pose_keypoints=motion_json(60, source_fps), **timing)
    assert (len(motion.poses), motion.fps) == (frames, fps)
    poses = motion.poses[0:3]
    assert poses.shape == (3, SIZE, SIZE, 3) and poses.dtype == np.uint8
    assert (poses > 0).any(axis=(1, 2, 3)).all()  # a skeleton is drawn on every frame
    assert not np.array_equal(poses[0], poses[2])  # and it moves
    assert motion.ref_pose.shape == (SIZE, SIZE, 3) and motion.ref_pose.any()
    assert motion.reference_image.shape == (96, 64, 3) and motion.audio_source is None


def test_frame_timing_rules():
    assert frame_timing(30) == (2, Fraction(15))
    assert frame_timing(30, frame_interval=1) == (1, Fraction(30))
    assert frame_timing(60, output_fps=25) == (2, Fraction(25))  # round(60 / 25) = 2
    assert frame_timing(10, output_fps=30) == (1, Fraction(30))  # never below one
    assert frame_timing(29.97, frame_interval=2) == (2, Fraction(15000, 1001))


def test_keypoints_without_a_rate_take_the_given_one():
    unrated = motion_json(60, fps=None)
    with pytest.raises(PoseInputError, match='"fps"'):
        prepare(pose_keypoints=unrated)
    from_source = prepare(pose_keypoints=unrated, source_fps=30)  # sent at 30: sampled to 15
    assert (len(from_source.poses), from_source.fps) == (30, Fraction(15))
    from_output = prepare(pose_keypoints=unrated, output_fps=15)  # every sent frame plays at 15
    assert (len(from_output.poses), from_output.fps) == (60, Fraction(15))
    every_third = prepare(pose_keypoints=unrated, output_fps=10, frame_interval=3)
    assert (len(every_third.poses), every_third.fps) == (20, Fraction(10))


def test_a_source_rate_must_agree_with_the_document_and_is_for_keypoints_only(tmp_path):
    with pytest.raises(PoseInputError, match="fps is given differently"):
        prepare(pose_keypoints=motion_json(60, 30), source_fps=25)
    write_skeleton_video(tmp_path / "skeleton.mp4", 4, fps=8)
    with pytest.raises(PoseInputError, match="keypoints only"):
        prepare(skeleton_video=tmp_path / "skeleton.mp4", source_fps=8)


def test_max_duration_cuts_the_output():
    assert len(prepare(max_duration_s=1.5).poses) == 22  # floor(1.5 s * 15 fps)
    assert len(prepare(max_duration_s=0.01).poses) == 1  # never empty
    assert len(prepare(max_duration_s=60).poses) == 30  # longer than the motion: all of it
    assert max_frames(2.5, Fraction(15000, 1001)) == 37 and max_frames(None, Fraction(15)) is None
    with pytest.raises(PoseInputError, match="max_duration_s must be a positive number"):
        prepare(max_duration_s=0)


def test_poses_are_aligned_to_the_reference_person_unless_asked_not_to():
    reference = demo_reference_keypoints()
    person = reference["frames"][0]["people"][0]["pose_keypoints_2d"]
    person[:] = [v * 0.6 if i % 3 != 2 else v for i, v in enumerate(person)]  # a smaller person, up left
    smaller = json.dumps(reference).encode()
    aligned = prepare(reference_keypoints=smaller).poses[0:1]
    as_given = prepare(reference_keypoints=smaller, align=False).poses[0:1]
    assert not np.array_equal(aligned, as_given)
    assert drawn_rows(aligned).mean() < drawn_rows(as_given).mean(), "moved up onto the smaller person"


def drawn_rows(frames: np.ndarray) -> np.ndarray:
    """Row indices of the skeleton's pixels in the first frame."""
    return np.argwhere(frames[0].max(axis=-1) > 0)[:, 0]


def write_skeleton_video(path, frames: int, fps: int) -> None:
    """Black frames with a grey bar whose brightness counts the frame: a drawn-skeleton video."""
    images = np.zeros((frames, 96, 64, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        image[40:50, 20:40] = 8 * i + 8
    write_video(path, images, fps, crf=0)


def test_a_skeleton_video_is_read_lazily_at_the_output_rate(tmp_path):
    path = tmp_path / "skeleton.mp4"
    write_skeleton_video(path, 31, fps=30)
    motion = prepare(skeleton_video=path)
    assert (len(motion.poses), motion.fps, motion.audio_source) == (16, Fraction(15), path)
    poses = motion.poses[0:16]
    assert poses.shape == (16, SIZE, SIZE, 3)
    bar = poses[:, 27:33, 22:38].mean(axis=(1, 2, 3))  # the bar, resized to 64x64
    np.testing.assert_allclose(bar, 16 * np.arange(16) + 8, atol=3)  # source frames 0, 2, 4, ...
    slowed = prepare(skeleton_video=path, output_fps=10, max_duration_s=0.5)
    assert (len(slowed.poses), slowed.fps) == (5, Fraction(10))  # every 3rd frame, cut at 0.5 s


class FakeExtractor:
    """Stands in for DWPose: the demo dance for any video, the reference keypoints for any photo."""

    def __init__(self):
        self.images, self.videos = [], []

    def extract_image(self, image):
        self.images.append(image)
        return parse_pose_json(json.dumps(demo_reference_keypoints()))

    def extract_video(self, path, frame_interval):
        self.videos.append((path, frame_interval))
        info = probe_video(path)
        kept = -(-info.num_frames // frame_interval)
        return parse_pose_json(motion_json(kept, fps=None), fps=info.fps / frame_interval)


def write_camera_video(path, frames: int, fps: int) -> None:
    write_video(path, np.random.default_rng(0).integers(60, 255, (frames, 96, 64, 3), dtype=np.uint8), fps)


def test_skeleton_and_camera_videos_are_told_apart(tmp_path):
    write_skeleton_video(tmp_path / "skeleton.mp4", 3, fps=8)
    write_camera_video(tmp_path / "camera.mp4", 3, fps=8)
    assert is_skeleton_video(tmp_path / "skeleton.mp4")
    assert not is_skeleton_video(tmp_path / "camera.mp4")
    skeleton = np.zeros((50, 50, 3), dtype=np.uint8)
    skeleton[20:25] = (0, 255, 0)
    assert looks_like_skeleton(skeleton)
    assert not looks_like_skeleton(np.full((50, 50, 3), 128, dtype=np.uint8))


def test_a_driving_video_is_extracted_at_the_output_rate_and_drawn(tmp_path):
    path = tmp_path / "camera.mp4"
    write_camera_video(path, 24, fps=24)
    extractor = FakeExtractor()
    motion = prepare(driving_video=path, extractor=extractor, max_duration_s=0.5)
    assert extractor.videos == [(path, 2)]  # 24 fps sampled to 12
    assert (len(motion.poses), motion.fps, motion.audio_source) == (6, Fraction(12), path)
    assert motion.poses[0:2].any(axis=(1, 2, 3)).all()
    with pytest.raises(PoseInputError, match="camera video"):
        prepare(driving_video=path)


def test_the_reference_pose_comes_from_keypoints_or_the_extractor():
    with pytest.raises(PoseInputError, match="reference_keypoints is required"):
        prepare(reference_keypoints=None)
    extractor = FakeExtractor()
    detected = prepare(reference_keypoints=None, extractor=extractor)
    given = prepare()
    assert [image.shape for image in extractor.images] == [(96, 64, 3)]  # the decoded photo
    np.testing.assert_array_equal(detected.ref_pose, given.ref_pose)


def test_exactly_one_motion_input(tmp_path):
    write_skeleton_video(tmp_path / "skeleton.mp4", 3, fps=8)
    with pytest.raises(PoseInputError, match="exactly one .* got pose keypoints and a skeleton video"):
        prepare(pose_keypoints=motion_json(), skeleton_video=tmp_path / "skeleton.mp4")
    with pytest.raises(PoseInputError, match="got none"):
        prepare_motion(reference_image=demo_reference_image(64, 96), height=SIZE, width=SIZE)


def test_inputs_are_read_from_paths_or_bytes(tmp_path):
    (tmp_path / "ref.png").write_bytes(demo_reference_image(64, 96))
    (tmp_path / "motion.json").write_bytes(motion_json())
    from_paths = prepare(reference_image=tmp_path / "ref.png", pose_keypoints=tmp_path / "motion.json")
    from_bytes = prepare()
    np.testing.assert_array_equal(from_paths.reference_image, from_bytes.reference_image)
    np.testing.assert_array_equal(from_paths.poses[0:2], from_bytes.poses[0:2])
    with pytest.raises(PoseInputError, match="reference image is not a readable PNG, JPEG or WebP"):
        prepare(reference_image=b"not an image")
