"""Rendered skeleton videos: every container, colour order, resizing, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.pose.inputs import load_pose_input
from model.pose.keypoints import PoseInputError
from model.pose.render import draw_frame, pose_frames_for_model
from model.pose.video import SkeletonVideo, iter_video_frames, load_skeleton_video, probe_video, write_video
from tests.model.pose.conftest import encode_video, numbered_frames


@pytest.mark.parametrize(
    ("suffix", "codec", "pix_fmt"),
    [(".mp4", "libx264", "yuv420p"), (".webm", "libvpx-vp9", "yuv420p"), (".mov", "qtrle", "rgb24"),
     (".gif", "gif", None)],
)
def test_every_container_decodes_at_its_fps(tmp_path, suffix, codec, pix_fmt):
    path = tmp_path / f"skeleton{suffix}"
    encode_video(path, numbered_frames(6), 10, codec, pix_fmt)
    video = load_pose_input(path.read_bytes(), "skeleton_video", frame_interval=1)
    assert isinstance(video, SkeletonVideo)
    assert video.num_frames == 6 and video.fps == pytest.approx(10.0)
    assert video.frames.shape[1:] == (96, 64, 3)
    np.testing.assert_allclose(video.frames.reshape(6, -1).mean(axis=1), np.arange(6) * 10, atol=4)


def test_lossless_skeleton_video_is_what_the_model_sees(tmp_path, draw_case):
    seq, _ = draw_case
    model_rgb = pose_frames_for_model(seq, 768, 512, jpeg_quality=None)[0]  # the drawn colours exactly
    path = tmp_path / "skeleton.mov"
    encode_video(path, [model_rgb, model_rgb], 15, "qtrle", "rgb24")
    video = load_skeleton_video(path)
    assert np.array_equal(pose_frames_for_model(video, 768, 512)[0], model_rgb)
    small = pose_frames_for_model(video, 384, 256)[1]
    assert np.array_equal(small, np.asarray(Image.fromarray(model_rgb).resize((256, 384), Image.BILINEAR)))
    swapped = load_skeleton_video(path, swap_red_blue=True)
    assert np.array_equal(swapped.frames[0], draw_frame(seq, 0))  # back to the original's array order


def test_write_video_round_trips_frame_count_and_fps(tmp_path):
    path = tmp_path / "out.mp4"
    assert write_video(path, numbered_frames(5), 12.5) == 5
    info = probe_video(path)
    assert (info.width, info.height, info.fps) == (64, 96, 12.5)
    assert load_skeleton_video(path, 1).num_frames == 5


def test_rejections(tmp_path):
    with pytest.raises(PoseInputError, match="could not open the video"):
        load_skeleton_video(b"definitely not a video")
    audio_only = tmp_path / "sound.wav"
    import av

    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(PoseInputError, match="no video stream"):
        load_skeleton_video(audio_only)
    path = tmp_path / "ok.mp4"
    encode_video(path, numbered_frames(2), 30)
    with pytest.raises(PoseInputError, match="frame_interval"):
        load_skeleton_video(path, 0)
    with pytest.raises(PoseInputError, match="must be named|name its kind"):
        load_pose_input(path)


def _stored_landscape(count: int = 3) -> list[np.ndarray]:
    """64x32 frames as a phone stores them, with a bright block in the stored top-left 16x8 pixels."""
    frames = []
    for i in range(count):
        frame = np.full((32, 64, 3), 20 + 10 * i, np.uint8)
        frame[:8, :16] = 240
        frames.append(frame)
    return frames


# Display matrix rotation (anticlockwise) -> upright (width, height), reported rotation, and where the
# stored top-left block is once upright: (first row, last row, first column, last column).
ROTATIONS = {
    90: ((32, 64), 90, (48, 63, 0, 7)),  # turned anticlockwise: the stored top-left is now bottom-left
    -90: ((32, 64), 270, (0, 15, 24, 31)),  # clockwise (the usual portrait phone video): top-right
    180: ((64, 32), 180, (24, 31, 48, 63)),
}


@pytest.mark.parametrize("rotation", sorted(ROTATIONS))
def test_rotated_phone_video_decodes_upright(tmp_path, rotation):
    (width, height), reported, (top, bottom, left, right) = ROTATIONS[rotation]
    path = tmp_path / "portrait.mp4"
    encode_video(path, _stored_landscape(), 10, rotation=rotation)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (width, height, reported)
    frames = [rgb for _, _, rgb in iter_video_frames(path, 1)]
    assert len(frames) == 3 and all(f.shape == (height, width, 3) for f in frames)
    rows, cols = np.nonzero(frames[0].mean(axis=-1) > 128)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (top, bottom, left, right)
    assert load_skeleton_video(path, 1).frames.shape == (3, height, width, 3)


def test_rotation_matches_opencv_videocapture(tmp_path):
    import cv2

    path = tmp_path / "portrait.mp4"
    encode_video(path, _stored_landscape(), 10, rotation=-90)
    capture = cv2.VideoCapture(str(path))  # what the original read driving videos with
    theirs = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        theirs.append(bgr[..., ::-1])
    capture.release()
    if not theirs:
        pytest.skip("this OpenCV build cannot decode H.264")
    ours = [rgb for _, _, rgb in iter_video_frames(path, 1)]
    assert len(ours) == len(theirs) == 3
    for mine, original in zip(ours, theirs):
        assert np.array_equal(mine, original)


def test_frame_count_cap(tmp_path, monkeypatch):
    path = tmp_path / "long.mp4"
    encode_video(path, numbered_frames(5), 30)
    monkeypatch.setattr("model.pose.video.MAX_FRAMES", 3)
    assert len(list(iter_video_frames(path, 2))) == 3  # frames 0, 2, 4: exactly at the cap
    with pytest.raises(PoseInputError, match="more than 3 frames at frame_interval 1"):
        list(iter_video_frames(path, 1))


def test_dimension_cap(tmp_path):
    path = tmp_path / "wide.mov"
    encode_video(path, [np.zeros((2, 8200, 3), np.uint8)], 10, "qtrle", "rgb24")
    with pytest.raises(PoseInputError, match="8200x2; each side must be 1..8192"):
        probe_video(path)
    with pytest.raises(PoseInputError, match="8200x2"):
        list(iter_video_frames(path, 1))


def test_skeleton_video_memory_cap(tmp_path, monkeypatch):
    path = tmp_path / "skeleton.mov"
    encode_video(path, numbered_frames(5), 10, "qtrle", "rgb24")
    frame_bytes = 96 * 64 * 3
    monkeypatch.setattr("model.pose.video.MAX_SKELETON_VIDEO_BYTES", 5 * frame_bytes)
    assert load_skeleton_video(path, 1).num_frames == 5  # exactly at the cap
    monkeypatch.setattr("model.pose.video.MAX_SKELETON_VIDEO_BYTES", 5 * frame_bytes - 1)
    with pytest.raises(PoseInputError, match="too large to hold .64x96."):
        load_skeleton_video(path, 1)


def test_decoding_error_names_the_frame(tmp_path):
    path = tmp_path / "frames.mov"
    encode_video(path, numbered_frames(4, 16, 16), 10, "png", "rgb24")
    data = bytearray(path.read_bytes())
    signature = b"\x89PNG\r\n\x1a\n"
    starts = [i for i in range(len(data)) if data.startswith(signature, i)]
    assert len(starts) == 4  # one PNG per frame
    data[starts[2]:starts[2] + 16] = bytes(16)  # break frame 2
    path.write_bytes(bytes(data))
    with pytest.raises(PoseInputError, match="could not be decoded at frame 2"):
        list(iter_video_frames(path, 1))
    data[starts[0]:starts[0] + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(PoseInputError, match="could not be decoded at frame 0"):
        probe_video(path)
