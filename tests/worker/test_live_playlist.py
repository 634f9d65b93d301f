"""worker/live_playlist.py: fragments decode (PyAV reads the playlist) as they are published, and to
exactly the frames of the result MP4 they were muxed from."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from model.longvideo.mp4 import EncodedSegment, Mp4Writer
from service.storage.objects import LocalStorage
from worker.live_playlist import LivePlaylist

JOB = "b" * 32
FPS = Fraction(15)


def segments(count: int, frames: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(count)  # noise: every frame differs, so a misplaced frame shows
    return [rng.integers(0, 256, (frames - k % 2, 64, 48, 3), dtype=np.uint8) for k in range(count)]


def encoded(tmp_path, parts: list[np.ndarray]) -> tuple[list[EncodedSegment], object]:
    """The result MP4 of `parts`, one run of the encoder each, and those runs."""
    runs = []
    with Mp4Writer(tmp_path / "result.mp4", fps=FPS, width=48, height=64, crf=30) as writer:
        for frames in parts:
            writer.write(frames)
            runs.append(writer.cut())
    return runs, tmp_path / "result.mp4"


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decoded_so_far(playlist) -> list[np.ndarray]:
    """What a player has played of a playlist that is still growing. FFmpeg treats an open (EVENT)
    playlist as live and keeps polling it for minutes, so a copy beside it, closed as it stands,
    is decoded instead: the same fragments, the same relative URIs."""
    snapshot = playlist.with_name("snapshot.m3u8")
    snapshot.write_text(playlist.read_text() + "#EXT-X-ENDLIST\n")
    return decoded(snapshot)


def test_the_playlist_grows_plays_before_the_end_and_equals_the_mp4(tmp_path):
    storage, parts = LocalStorage(tmp_path / "store"), segments(3)
    runs, mp4 = encoded(tmp_path, parts)
    live = LivePlaylist(storage, JOB, FPS)
    playlist = tmp_path / "store" / "jobs" / JOB / "live.m3u8"
    live.publish(0, runs[0])
    live.publish(1, runs[1])
    text = playlist.read_text()
    assert text.count("#EXTINF:") == 2 and "#EXT-X-ENDLIST" not in text
    mp4_frames = decoded(mp4)
    so_far = decoded_so_far(playlist)  # playable while the job still runs
    assert len(so_far) == len(parts[0]) + len(parts[1])
    assert all(np.array_equal(a, b) for a, b in zip(so_far, mp4_frames))
    live.publish(2, runs[2])
    assert "#EXT-X-ENDLIST" not in playlist.read_text(), "the last segment does not close the playlist"
    live.close(4)  # a segment missing: not closed
    assert "#EXT-X-ENDLIST" not in playlist.read_text()
    live.close(3)
    assert playlist.read_text().endswith("#EXT-X-ENDLIST\n")
    frames = decoded(playlist)
    assert len(frames) == len(mp4_frames) == sum(map(len, parts))
    assert all(np.array_equal(a, b) for a, b in zip(frames, mp4_frames)), "the fragments are the MP4's frames"
    with av.open(str(playlist)) as container:  # one continuous timeline
        times = [frame.time for frame in container.decode(video=0)]
    assert np.allclose(np.diff(times), 1 / 15, atol=1e-3)


def test_every_fragment_shares_one_init_section(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    runs, _ = encoded(tmp_path, segments(2))  # 6 and 5 frames
    live = LivePlaylist(storage, JOB, FPS)
    live.publish(0, runs[0])
    first = storage.get_bytes(f"jobs/{JOB}/live/init.mp4")
    live.publish(1, runs[1])
    assert storage.get_bytes(f"jobs/{JOB}/live/init.mp4") == first


def test_a_resumed_job_keeps_the_earlier_entries(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    runs, _ = encoded(tmp_path, segments(2))
    LivePlaylist(storage, JOB, FPS).publish(0, runs[0])
    LivePlaylist(storage, JOB, FPS).publish(1, runs[1])  # a new worker's run
    LivePlaylist(storage, JOB, FPS).publish(1, runs[1])  # rendered again after a crash: listed once
    LivePlaylist(storage, JOB, FPS).close(2)
    playlist = tmp_path / "store" / "jobs" / JOB / "live.m3u8"
    assert playlist.read_text().count("#EXTINF:") == 2 and len(decoded(playlist)) == 11


def test_a_segment_after_a_gap_is_not_listed(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    runs, _ = encoded(tmp_path, segments(2))
    LivePlaylist(storage, JOB, FPS).publish(1, runs[1])  # segment 0 never made it
    assert not storage.exists(f"jobs/{JOB}/live.m3u8")


def test_closing_a_playlist_with_no_segment_writes_nothing(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    LivePlaylist(storage, JOB, FPS).close(1)
    assert storage.list("jobs/") == []


def test_a_publishing_failure_never_fails_the_job(tmp_path):
    class Broken(LocalStorage):
        def put_bytes(self, *args, **kwargs):
            raise OSError("disk full")

    runs, _ = encoded(tmp_path, segments(1))
    live = LivePlaylist(Broken(tmp_path / "store"), JOB, FPS)
    live.publish(0, runs[0])  # no raise
    live.close(1)
    assert not (tmp_path / "store" / "jobs").exists()
