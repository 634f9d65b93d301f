"""worker/live_playlist.py: fragments decode (PyAV reads the playlist) as they are published."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from service.storage.objects import LocalStorage
from worker.live_playlist import LivePlaylist

JOB = "b" * 32


def segments(count: int, frames: int = 6) -> list[np.ndarray]:
    # flat frames of distinct grey levels: easy to recognise after lossy encoding
    return [np.full((frames, 64, 64, 3), 20 + 40 * k, np.uint8) for k in range(count)]


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


def test_the_playlist_grows_plays_before_the_end_and_closes(tmp_path):
    storage, parts = LocalStorage(tmp_path), segments(3)
    live = LivePlaylist(storage, JOB, Fraction(15))
    playlist = tmp_path / "jobs" / JOB / "live.m3u8"
    live.publish(0, parts[0], last=False)
    live.publish(1, parts[1], last=False)
    text = playlist.read_text()
    assert text.count("#EXTINF:") == 2 and "#EXT-X-ENDLIST" not in text
    frames = decoded_so_far(playlist)  # playable while the job still runs
    assert len(frames) == 12 and abs(int(frames[7].mean()) - 60) <= 2
    live.publish(2, parts[2], last=True)
    frames = decoded(playlist)
    assert "#EXT-X-ENDLIST" in playlist.read_text() and len(frames) == 18
    assert [round(float(f.mean()) / 40) for f in frames[::6]] == [0, 2, 2]  # 20, 60, 100 (rounded /40)
    with av.open(str(playlist)) as container:  # one continuous timeline
        times = [float(frame.time) for frame in container.decode(video=0)]
    assert np.allclose(np.diff(times), 1 / 15, atol=1e-3)


def test_a_resumed_job_keeps_the_earlier_entries(tmp_path):
    storage, parts = LocalStorage(tmp_path), segments(2)
    LivePlaylist(storage, JOB, Fraction(15)).publish(0, parts[0], last=False)
    LivePlaylist(storage, JOB, Fraction(15)).publish(1, parts[1], last=True)  # a new worker's run
    assert len(decoded(tmp_path / "jobs" / JOB / "live.m3u8")) == 12


def test_a_publishing_failure_never_fails_the_job(tmp_path):
    class Broken(LocalStorage):
        def put_bytes(self, *args, **kwargs):
            raise OSError("disk full")

    LivePlaylist(Broken(tmp_path), JOB, Fraction(15)).publish(0, segments(1)[0], last=True)  # no raise
