"""Peak memory does not grow with the length of the video (the small version of
bench/long_video_memory.py: same measurement, fake renderer, 256x256 frames)."""

import sys

from bench.long_video_memory import MAX_RATIO, measure_peak_rss
from model.longvideo.mp4 import probe_video

SHORT, LONG = 60, 360  # 4 s and 24 s at 15 fps


def peak_rss(tmp_path, frames, *extra):
    folder = tmp_path / f"{frames}{''.join(extra)}"
    folder.mkdir()
    out = folder / "out.mp4"
    cmd = [sys.executable, "-m", "tests.model.longvideo_fakes", str(frames), str(out), *extra]
    rc, peak, _ = measure_peak_rss(cmd, folder)
    assert rc == 0
    assert probe_video(out).frames == frames
    return peak


def test_peak_rss_of_a_long_render_stays_near_a_short_one(tmp_path):
    short = peak_rss(tmp_path, SHORT)
    long = peak_rss(tmp_path, LONG)
    assert long / short <= MAX_RATIO, (short, long)
    # The measurement is sensitive enough: keeping every segment alive breaks the bound.
    hoarding = peak_rss(tmp_path, LONG, "--hoard")
    assert hoarding / short > MAX_RATIO, (short, hoarding)


def test_the_callers_own_memory_does_not_count(tmp_path):
    """A child inherits its parent's high-water mark through fork and exec; the launcher must hide
    it, or the test runner's loaded models would swamp every measurement."""
    ballast = bytearray(400 * 2**20)
    ballast[:: 2**12] = b"x" * len(ballast[:: 2**12])  # touch every page so it is resident
    rc, peak, stdout = measure_peak_rss([sys.executable, "-c", "print('hi')"], tmp_path)
    assert (rc, stdout) == (0, "hi\n")
    assert peak < 100 * 2**20, peak
    del ballast
