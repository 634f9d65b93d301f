"""The overlapped segment loop (model/longvideo/overlap.py): same file, same order, same errors."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from model.longvideo.chain import SamplingOptions
from model.longvideo.overlap import BackgroundStage
from model.longvideo.video import RenderOptions, render_video
from tests.model.longvideo_fakes import FakeRenderer, decoded_frames, pose_frames

H = W = 32
OPTIONS = RenderOptions(height=H, width=W, sampling=SamplingOptions(seed=3, steps=2), segment_frames=6)


def render(tmp_path, name, overlap, **kwargs):
    renderer = FakeRenderer()
    out = tmp_path / name
    image = np.full((H, W, 3), 90, np.uint8)
    render_video(renderer, image, image, pose_frames(26, H, W), out, fps=15, options=OPTIONS, overlap=overlap,
                 **kwargs)
    return out, renderer


def test_overlapped_output_is_byte_identical_to_serial(tmp_path):
    done = {False: [], True: []}
    threads = {False: set(), True: set()}

    def recorder(overlap):
        def on_done(finished):
            done[overlap].append((finished.segment.index, finished.frames.copy(), finished.last_frame.copy()))
            threads[overlap].add(threading.current_thread() is threading.main_thread())
        return on_done

    serial, _ = render(tmp_path, "serial.mp4", False, on_segment_done=recorder(False))
    overlapped, renderer = render(tmp_path, "overlapped.mp4", True, on_segment_done=recorder(True))
    assert serial.read_bytes() == overlapped.read_bytes()
    assert [i for i, *_ in done[True]] == [0, 1, 2, 3, 4] == [i for i, *_ in done[False]]
    for (_, frames_s, last_s), (_, frames_o, last_o) in zip(done[False], done[True]):
        assert np.array_equal(frames_s, frames_o) and np.array_equal(last_s, last_o)
        assert np.array_equal(frames_o[-1], last_o)
    assert threads == {False: {True}, True: {False}}, "overlapped segments finish off the main thread"
    assert renderer.frames_decoded == 26, "every frame is decoded once (a shared first frame not again)"
    assert len(decoded_frames(overlapped)) == 26


class StoreFailed(RuntimeError):
    pass


@pytest.mark.parametrize("overlap", [False, True])
def test_a_failure_in_the_background_stage_stops_the_render_with_that_error(tmp_path, overlap):
    finished = []

    def on_done(segment):
        if segment.segment.index == 2:
            raise StoreFailed("segment 2 could not be stored")
        finished.append(segment.segment.index)

    with pytest.raises(StoreFailed, match="segment 2"):
        render(tmp_path, "failed.mp4", overlap, on_segment_done=on_done)
    assert finished == [0, 1]
    assert not (tmp_path / "failed.mp4").exists() and not list(tmp_path.glob("*.partial"))


def test_a_failed_render_lets_the_segment_in_flight_finish():
    stage = BackgroundStage()
    release, stored = threading.Event(), []

    def slow_store():
        release.wait(5)
        stored.append("segment k")

    with pytest.raises(KeyboardInterrupt), stage:
        stage.submit(slow_store)
        threading.Timer(0.05, release.set).start()
        raise KeyboardInterrupt  # the rendering thread fails while segment k is being stored
    assert stored == ["segment k"], "a segment being stored is stored, not abandoned"


def test_the_guard_raises_a_background_error_at_the_next_step():
    stage = BackgroundStage()
    stage.submit(lambda: (_ for _ in ()).throw(StoreFailed("upload failed")))
    stage._pending.exception()  # wait for it to fail
    with pytest.raises(StoreFailed, match="upload failed"):
        stage.guard(lambda: False)()
    stage.close()
