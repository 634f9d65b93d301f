import json

import numpy as np
import pytest

from model.errors import RenderCancelled
from model.longvideo.chain import SamplingOptions
from model.longvideo.mp4 import probe_video
from model.longvideo.planner import plan_segments
from model.longvideo.video import RenderOptions, Resume, render_video
from tests.model.longvideo_fakes import FakeRenderer, decoded_frames, pose_frames

H, W = 16, 24
OPTIONS = RenderOptions(height=H, width=W, sampling=SamplingOptions(seed=3, steps=2), segment_frames=8, crf=0)
REF = np.full((H, W, 3), 90, np.uint8)


def render(out, renderer=None, poses=None, **kwargs):
    renderer = renderer or FakeRenderer()
    poses = pose_frames(30, H, W) if poses is None else poses
    return render_video(renderer, REF, REF, poses, out, fps=15, **{"options": OPTIONS, **kwargs})


def test_chain_mode_writes_every_frame_once_with_metadata(tmp_path):
    renderer, finished = FakeRenderer(), []
    result = render(tmp_path / "out.mp4", renderer, on_segment_done=finished.append)
    info = probe_video(result.path)
    assert (result.frames, info.frames, info.duration_s) == (30, 30, pytest.approx(2.0))
    assert renderer.references_prepared == 1
    assert [f.segment.index for f in finished] == list(range(len(plan_segments(30, 8))))
    assert info.metadata["checkpoint"] == "fake test renderer" and info.metadata["untrained"] == "true"
    assert info.metadata["seed"] == "3"
    params = json.loads(info.metadata["params"])
    assert (params["mode"], params["segment_frames"], params["steps"]) == ("chain", 8, 2)
    # The decoded video is the segments' frames in order (yuv420p at crf 0 is near-lossless).
    expected = np.concatenate([f.frames for f in finished]).astype(float)
    decoded = np.stack(list(decoded_frames(result.path))).astype(float)
    assert np.abs(decoded.mean(axis=(1, 2, 3)) - expected.mean(axis=(1, 2, 3))).max() < 3


def test_resumed_job_writes_the_same_video(tmp_path):
    finished = []
    render(tmp_path / "full.mp4", on_segment_done=finished.append)
    k = 2  # crashed after storing segments 0 and 1
    resume = Resume(k, finished[k - 1].last_frame, [f.frames for f in finished[:k]])
    renderer = FakeRenderer()
    render(tmp_path / "resumed.mp4", renderer, resume=resume)
    assert len(renderer.calls) == len(finished) - k
    for a, b in zip(decoded_frames(tmp_path / "full.mp4"), decoded_frames(tmp_path / "resumed.mp4"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cancel_leaves_no_file(tmp_path):
    renderer = FakeRenderer()
    with pytest.raises(RenderCancelled):
        render(tmp_path / "out.mp4", renderer, should_cancel=lambda: renderer.steps_run >= 5)
    assert renderer.steps_run == 5
    assert list(tmp_path.iterdir()) == []


def test_window_mode_passes_the_context_and_streams_all_frames(tmp_path):
    renderer = FakeRenderer()
    options = RenderOptions(
        height=H,
        width=W,
        mode="window",
        context_size=8,
        context_overlap=2,
        context_batch_size=2,
        sampling=SamplingOptions(seed=3, steps=2),
    )
    result = render(tmp_path / "out.mp4", renderer, options=options)
    assert probe_video(result.path).frames == 30
    (call,) = renderer.calls
    assert call.kwargs == {"context_size": 8, "context_overlap": 2, "context_batch_size": 2}


def test_window_mode_on_a_clip_shorter_than_the_window_writes_every_frame(tmp_path):
    renderer, events = FakeRenderer(), []
    options = RenderOptions(
        height=H,
        width=W,
        mode="window",
        context_size=32,
        context_overlap=8,
        sampling=SamplingOptions(seed=3, steps=2),
    )
    result = render(
        tmp_path / "out.mp4", renderer, poses=pose_frames(4, H, W), options=options, on_progress=events.append
    )
    assert probe_video(result.path).frames == 4
    assert renderer.calls[0].kwargs["context_size"] == 32  # model/window.py makes it one window
    assert [(e.step, e.steps) for e in events] == [(1, 2), (2, 2), (2, 2)]
    assert (events[-1].fraction, events[-1].frames_done) == (1.0, 4)


def test_window_mode_refuses_chain_only_inputs(tmp_path):
    options = RenderOptions(height=H, width=W, mode="window")
    with pytest.raises(ValueError, match="chain mode"):
        render(tmp_path / "out.mp4", options=options, first_frame=REF)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "loop"}, "mode"),
        ({"height": 20}, "multiples of 8"),
        ({"context_size": 8, "context_overlap": 8}, "context_overlap"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RenderOptions(**kwargs)


def test_resume_without_all_earlier_frames_is_refused(tmp_path):
    finished = []
    render(tmp_path / "full.mp4", on_segment_done=finished.append)
    resume = Resume(2, finished[1].last_frame, [finished[0].frames])  # segment 1's frames are missing
    expected = plan_segments(30, 8).frames_before(2)
    with pytest.raises(ValueError, match=f"needs the {expected} frames of the segments before it, got 7"):
        render(tmp_path / "resumed.mp4", resume=resume)
    assert not (tmp_path / "resumed.mp4").exists()


def test_a_window_renderer_that_drops_frames_is_reported(tmp_path):
    class Dropping(FakeRenderer):
        def render_window(self, *args, **kwargs):
            yield from list(super().render_window(*args, **kwargs))[:-1]

    options = RenderOptions(height=H, width=W, mode="window", context_size=8, context_overlap=2)
    with pytest.raises(RuntimeError, match="wrote 29 frames for 30 poses"):
        render(tmp_path / "out.mp4", Dropping(), options=options)
    assert list(tmp_path.iterdir()) == []
