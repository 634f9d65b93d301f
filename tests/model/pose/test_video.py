"""Rendered skeleton videos: every container, colour order, resizing, rejections."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.pose.inputs import load_pose_input
from model.pose.keypoints import PoseInputError
from model.pose.render import draw_frame, pose_frames_for_model
from model.pose.video import SkeletonVideo, load_skeleton_video, probe_video, write_video
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
    model_rgb = pose_frames_for_model(seq, 768, 512)[0]
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
