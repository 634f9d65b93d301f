"""Mp4Writer.cut: each segment encoded once, in a run of its own, and the same packets reused.

The live playlist muxes a run's packets into a fragment (tests/worker/test_live_playlist.py); here:
the runs decode to exactly the MP4's frames with exact timestamps, encoding the same frames again
gives the same packets (what a resumed job relies on), the sound stays in sync across cuts, and the
file's bytes never change once written except the header patched at close (what the progressive
upload relies on).
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from model.longvideo.mp4 import EncodedSegment, Mp4Writer, partial_path, probe_video
from tests.model.test_longvideo_mp4 import (
    click_offsets_s,
    clicks,
    decoded_audio,
    make_source_with_audio,
    presentation_times,
)

H, W = 32, 48


def noise(count: int, seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def write_runs(path, parts: list[np.ndarray], fps=Fraction(15), **kwargs) -> list[EncodedSegment]:
    runs = []
    with Mp4Writer(path, fps=fps, width=W, height=H, crf=28, **kwargs) as writer:
        for frames in parts:
            writer.write(frames)
            runs.append(writer.cut())
    return runs


def decode_run(run: EncodedSegment) -> list[np.ndarray]:
    """A run decoded on its own, by a fresh decoder, as a player of its fragment would."""
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for packet in [*(av.Packet(p.data) for p in run.packets), None]:
        frames += [frame.to_ndarray(format="rgb24") for frame in decoder.decode(packet)]
    return frames


def mp4_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_runs_decode_to_exactly_the_mp4s_frames_at_exact_times(tmp_path):
    fps = Fraction(30000, 1001)
    parts = [noise(7, 0), noise(7, 1), noise(4, 2)]
    out = tmp_path / "out.mp4"
    runs = write_runs(out, parts, fps=fps)
    assert [(r.index, r.first_frame, r.frames) for r in runs] == [(0, 0, 7), (1, 7, 7), (2, 14, 4)]
    assert all(r.packets[0].keyframe and [p.pts for p in r.packets] == list(range(r.frames)) for r in runs)
    whole = mp4_frames(out)
    from_runs = [frame for run in runs for frame in decode_run(run)]
    assert len(whole) == len(from_runs) == 18
    assert all(np.array_equal(a, b) for a, b in zip(whole, from_runs))
    assert presentation_times(out) == [Fraction(i) / fps for i in range(18)]
    with av.open(str(out)) as container:  # a keyframe where each run starts, nowhere else
        keys = [i for i, packet in enumerate(container.demux(video=0)) if packet.size and packet.is_keyframe]
    assert keys == [0, 7, 14]


def test_the_same_frames_give_the_same_packets(tmp_path):
    """A resumed job encodes its stored segments again: the MP4 must hold what was published."""
    parts = [noise(5, 3), noise(6, 4)]
    first = write_runs(tmp_path / "a.mp4", parts)
    again = write_runs(tmp_path / "b.mp4", parts)
    assert [run.packets for run in first] == [run.packets for run in again]
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_without_cuts_the_video_is_one_run(tmp_path):
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=15, width=W, height=H) as writer:
        for frame in noise(5, 5):
            writer.write(frame)
        assert writer.cut().frames == 5 and writer.cut() is None
    assert probe_video(out).frames == 5


@pytest.mark.parametrize("segment", [7, 31])
def test_audio_stays_in_sync_across_cuts(tmp_path, segment):
    seconds, rate, frames = 6, 44100, 90
    source = tmp_path / "driving.mp4"
    make_source_with_audio(source, seconds + 1, rate, sound=clicks(seconds + 1, rate))
    out = tmp_path / "out.mp4"
    write_runs(out, [np.zeros((min(segment, frames - s), H, W, 3), np.uint8) for s in range(0, frames, segment)],
               audio_source=source)
    offsets = click_offsets_s(decoded_audio(out), seconds, rate)
    assert np.abs(offsets).max() <= 0.025, f"clicks off by {np.round(offsets * 1000)} ms"
    assert probe_video(out).audio_duration_s == pytest.approx(seconds, abs=0.025)


def test_written_bytes_change_only_in_the_header_when_the_file_closes(tmp_path):
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, fps=15, width=128, height=128, crf=0) as writer:
        for seed in range(4):
            writer.write(noise(8, seed, 128, 128))  # lossless noise: about 1.5 MB in all
            writer.cut()
        growing = partial_path(out).read_bytes()  # the muxer writes to disk in blocks as it goes
    final = out.read_bytes()
    changed = [i for i in range(len(growing)) if growing[i] != final[i]]
    assert len(growing) > 500_000 and changed and max(changed) < 64, "only the mdat size near the start"
    assert final.index(b"moov") > final.index(b"mdat"), "the index is at the end"


def test_chain_mode_hands_each_segment_its_run_and_a_resumed_job_writes_the_same_bytes(tmp_path):
    from model.longvideo.chain import SamplingOptions
    from model.longvideo.video import RenderOptions, Resume, render_video
    from tests.model.longvideo_fakes import FakeRenderer, pose_frames

    options = RenderOptions(height=32, width=48, sampling=SamplingOptions(seed=3, steps=2), segment_frames=8)
    ref, poses = np.full((32, 48, 3), 90, np.uint8), pose_frames(30, 32, 48)

    def render(out, **kwargs):
        finished = []
        render_video(FakeRenderer(), ref, ref, poses, out, fps=15, options=options,
                     on_segment_done=finished.append, **kwargs)
        return finished

    full = render(tmp_path / "full.mp4")
    assert [(f.encoded.index, f.encoded.first_frame, f.encoded.frames) for f in full] == [
        (f.segment.index, f.segment.first_new, len(f.frames)) for f in full]
    from_runs, whole = [x for f in full for x in decode_run(f.encoded)], mp4_frames(tmp_path / "full.mp4")
    assert len(from_runs) == len(whole) == 30 and all(np.array_equal(a, b) for a, b in zip(from_runs, whole))
    k = 2  # crashed after storing segments 0 and 1: their frames are written again from the checkpoints
    resumed = render(tmp_path / "resumed.mp4", resume=Resume(k, full[k - 1].last_frame, [f.frames for f in full[:k]]))
    assert [f.encoded.packets for f in resumed] == [f.encoded.packets for f in full[k:]]
    assert (tmp_path / "resumed.mp4").read_bytes() == (tmp_path / "full.mp4").read_bytes()


def test_an_empty_batch_starts_no_run(tmp_path):
    with Mp4Writer(tmp_path / "out.mp4", fps=15, width=W, height=H) as writer:
        writer.write(np.zeros((0, H, W, 3), np.uint8))
        assert writer.cut() is None
        writer.write(noise(2, 6))
        assert writer.cut().frames == 2
