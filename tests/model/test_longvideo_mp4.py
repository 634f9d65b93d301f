from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from model.longvideo.mp4 import Mp4Writer, exact_fps, probe_video
from model.longvideo.video import output_timing
from tests.model.longvideo_fakes import decoded_frames

H, W = 32, 48


def write(path: Path, frames: int, fps, **kwargs) -> None:
    with Mp4Writer(path, fps=fps, width=W, height=H, **kwargs) as writer:
        for start in range(0, frames, 7):  # several batches, like segments
            count = min(7, frames - start)
            writer.write(np.full((count, H, W, 3), 10 * start % 256, np.uint8))


def presentation_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return [frame.pts * frame.time_base for frame in container.decode(video=0)]


@pytest.mark.parametrize(
    "source_fps, interval, expected_interval, expected_fps",
    [
        (30, None, 2, Fraction(15)),
        (25, None, 2, Fraction(25, 2)),
        (Fraction(30000, 1001), None, 2, Fraction(15000, 1001)),
        (29.97, None, 2, Fraction(15000, 1001)),
        (60, None, 4, Fraction(15)),
        (15, None, 1, Fraction(15)),
        (24, 1, 1, Fraction(24)),
        (50, 5, 5, Fraction(10)),
    ],
)
def test_frame_count_and_timestamps_are_exact(
    tmp_path, source_fps, interval, expected_interval, expected_fps
):
    got_interval, fps = output_timing(source_fps, interval)
    assert (got_interval, fps) == (expected_interval, expected_fps)
    out = tmp_path / "out.mp4"
    write(out, 37, fps)
    info = probe_video(out)
    assert info.frames == 37
    assert info.fps == expected_fps
    assert info.duration_s == pytest.approx(float(37 / expected_fps), abs=1e-9)
    assert presentation_times(out) == [Fraction(i) / expected_fps for i in range(37)]


def test_stream_is_h264_yuv420p_with_metadata(tmp_path):
    out = tmp_path / "out.mp4"
    write(out, 5, 15, crf=30, metadata={"checkpoint": "untrained tiny (random weights)", "seed": "11"})
    info = probe_video(out)
    assert (info.codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", W, H)
    assert info.metadata["checkpoint"] == "untrained tiny (random weights)"
    assert info.metadata["seed"] == "11"
    assert info.audio_duration_s is None


def test_frames_come_back_in_order(tmp_path):
    out = tmp_path / "out.mp4"
    write(out, 21, 15, crf=0)
    means = np.array([frame.mean() for frame in decoded_frames(out)])
    np.testing.assert_allclose(means, [0] * 7 + [70] * 7 + [140] * 7, atol=2)


def test_nothing_is_left_behind_when_rendering_fails(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), Mp4Writer(out, fps=15, width=W, height=H) as writer:
        writer.write(np.zeros((3, H, W, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_the_file_appears_only_when_complete(tmp_path):
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=15, width=W, height=H) as writer:
        writer.write(np.zeros((3, H, W, 3), np.uint8))
        assert not out.exists()
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def tone(seconds: float, rate: int) -> np.ndarray:
    return np.sin(0.05 * np.arange(int(seconds * rate)))[None].repeat(2, 0).astype(np.float32)


def clicks(seconds: int, rate: int) -> np.ndarray:
    """Silence with a short click at the start of every whole second."""
    sound = np.zeros((2, seconds * rate), np.float32)
    for second in range(seconds):
        sound[:, second * rate : second * rate + 8] = 0.9
    return sound


def make_source_with_audio(path: Path, seconds: float = 3.0, rate: int = 44100, sound=None) -> None:
    """A black 30 fps video of `seconds` with stereo AAC audio (`sound` [2, samples], default a tone)."""
    sound = tone(seconds, rate) if sound is None else sound
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * 30)):
            frame = av.VideoFrame.from_ndarray(np.zeros((H, W, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(video.encode(frame))
        for start in range(0, sound.shape[1], 1024):
            samples = np.ascontiguousarray(sound[:, start : start + 1024])
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def decoded_audio(path: Path) -> np.ndarray:
    """The loudest channel of the file's audio, as one array of samples."""
    with av.open(str(path)) as container:
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    return np.abs(samples).max(axis=0)


def click_offsets_s(sound: np.ndarray, seconds: int, rate: int) -> np.ndarray:
    """For each whole second, how far (in s) the loudest sample within half a second of it lies."""
    offsets = []
    for second in range(seconds):
        start = max(0, second * rate - rate // 2)
        peak = start + int(np.argmax(sound[start : second * rate + rate // 2]))
        offsets.append((peak - second * rate) / rate)
    return np.array(offsets)


@pytest.mark.parametrize("batch", [1, 31])  # window mode writes frame by frame, chain mode by segment
def test_audio_stays_in_sync_over_the_whole_video(tmp_path, batch):
    seconds, rate, frames = 10, 44100, 150  # 150 frames at 15 fps: 10 s
    source = tmp_path / "driving.mp4"
    make_source_with_audio(source, seconds + 1, rate, sound=clicks(seconds + 1, rate))
    assert np.abs(click_offsets_s(decoded_audio(source), seconds, rate)).max() <= 0.005  # a sound source
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=15, width=W, height=H, audio_source=source) as writer:
        for start in range(0, frames, batch):
            writer.write(np.zeros((min(batch, frames - start), H, W, 3), np.uint8))
    offsets = click_offsets_s(decoded_audio(out), seconds, rate)
    assert np.abs(offsets).max() <= 0.025, f"clicks off by {np.round(offsets * 1000)} ms"
    assert probe_video(out).audio_duration_s == pytest.approx(seconds, abs=0.025)


def test_audio_of_the_driving_video_is_muxed_and_trimmed(tmp_path):
    source = tmp_path / "driving.mp4"
    make_source_with_audio(source)
    out = tmp_path / "out.mp4"
    write(out, 21, 15, audio_source=source)  # 1.4 s of a 3 s source
    info = probe_video(out)
    assert info.frames == 21 and info.duration_s == pytest.approx(1.4)
    assert info.audio_duration_s == pytest.approx(1.4, abs=0.025)  # to within one AAC frame


def test_a_source_without_audio_gives_a_silent_video(tmp_path):
    source = tmp_path / "silent.mp4"
    write(source, 10, 30)
    out = tmp_path / "out.mp4"
    write(out, 5, 15, audio_source=source)
    assert probe_video(out).audio_duration_s is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 47}, "even"),
        ({"crf": 60}, "crf"),
        ({"fps": 0}, "fps"),
    ],
)
def test_bad_writer_settings_are_refused(tmp_path, kwargs, message):
    settings = {"fps": 15, "width": W, "height": H, **kwargs}
    with pytest.raises(ValueError, match=message):
        Mp4Writer(tmp_path / "out.mp4", **settings)


def test_wrong_frame_size_is_refused(tmp_path):
    with (
        pytest.raises(ValueError, match="uint8"),
        Mp4Writer(tmp_path / "out.mp4", fps=15, width=W, height=H) as w,
    ):
        w.write(np.zeros((2, H, W + 2, 3), np.uint8))


def test_exact_fps_keeps_fractions_and_snaps_floats():
    assert exact_fps(Fraction(30000, 1001)) == Fraction(30000, 1001)
    assert exact_fps(23.976) == Fraction(24000, 1001)
    assert exact_fps(12.5) == Fraction(25, 2)
