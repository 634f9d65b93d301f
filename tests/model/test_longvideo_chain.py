import numpy as np
import pytest

from model.errors import RenderCancelled
from model.longvideo.chain import SamplingOptions, render_chain
from model.longvideo.planner import plan_segments
from model.longvideo.progress import ProgressTracker
from model.longvideo.seeds import segment_seed
from tests.model.longvideo_fakes import FakeRenderer, pose_frames

SAMPLING = SamplingOptions(seed=42, steps=3)
H, W = 8, 16


def run(renderer, poses, **kwargs):
    return list(
        render_chain(renderer, 5, poses, kwargs.pop("sampling", SAMPLING), segment_frames=8, **kwargs)
    )


def test_each_segment_is_conditioned_on_the_previous_last_frame():
    renderer, poses = FakeRenderer(), pose_frames(30, H, W)
    finished = run(renderer, poses)
    assert len(finished) == len(renderer.calls) == len(plan_segments(30, 8))
    assert renderer.calls[0].first_frame is None
    for previous, call in zip(finished, renderer.calls[1:]):
        np.testing.assert_array_equal(call.first_frame, previous.last_frame)
        np.testing.assert_array_equal(call.first_frame, previous.frames[-1])


def test_shared_frame_is_written_once():
    renderer, poses = FakeRenderer(), pose_frames(30, H, W)
    finished = run(renderer, poses)
    video = np.concatenate([f.frames for f in finished])
    assert len(video) == 30
    for f in finished:
        assert len(f.frames) == f.segment.new_frames
        np.testing.assert_array_equal(video[f.segment.first_new : f.segment.stop], f.frames)


def test_segments_get_their_own_pose_slice_and_derived_seed():
    renderer, poses = FakeRenderer(), pose_frames(30, H, W)
    run(renderer, poses)
    plan = plan_segments(30, 8)
    assert [c.seed for c in renderer.calls] == [segment_seed(42, k) for k in range(len(plan))]
    assert [c.frames for c in renderer.calls] == [s.length for s in plan.segments]


def test_user_first_frame_conditions_segment_zero():
    renderer, poses = FakeRenderer(), pose_frames(12, H, W)
    first = np.full((H, W, 3), 200, np.uint8)
    finished = run(renderer, poses, first_frame=first)
    np.testing.assert_array_equal(renderer.calls[0].first_frame, first)
    np.testing.assert_array_equal(finished[0].frames[0], first)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_resume_from_segment_k_equals_the_uninterrupted_run(k):
    poses = pose_frames(30, H, W)
    full = run(FakeRenderer(), poses)
    resumed = run(FakeRenderer(), poses, start_segment=k, previous_last_frame=full[k - 1].last_frame.copy())
    assert [f.segment for f in resumed] == [f.segment for f in full[k:]]
    for a, b in zip(resumed, full[k:]):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.last_frame, b.last_frame)


def test_resume_needs_the_stored_last_frame():
    poses = pose_frames(30, H, W)
    with pytest.raises(ValueError, match="last frame of segment 1"):
        run(FakeRenderer(), poses, start_segment=2)
    with pytest.raises(ValueError, match="start_segment"):
        run(FakeRenderer(), poses, start_segment=99, previous_last_frame=poses[0])


@pytest.mark.parametrize("cancel_after", [1, 4, 7, 9])
def test_cancellation_stops_within_one_step(cancel_after):
    renderer, poses = FakeRenderer(), pose_frames(30, H, W)
    finished = []
    segments = render_chain(
        renderer,
        5,
        poses,
        SAMPLING,
        segment_frames=8,
        should_cancel=lambda: renderer.steps_run >= cancel_after,
    )
    with pytest.raises(RenderCancelled):
        finished.extend(segments)
    # The flag went up right after step `cancel_after`; no further step started.
    assert renderer.steps_run == cancel_after
    assert len(finished) == cancel_after // SAMPLING.steps


def test_progress_reports_segments_steps_frames_and_eta():
    events = []
    renderer, poses = FakeRenderer(), pose_frames(30, H, W)
    run(renderer, poses, on_progress=events.append)
    plan = plan_segments(30, 8)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e.segment for e in events} == set(range(1, len(plan) + 1))
    assert all(e.segments == len(plan) and e.steps == SAMPLING.steps and e.frames_total == 30 for e in events)
    assert events[-1].frames_done == 30 and events[-1].eta_s == 0.0
    assert "segment 1/" in events[0].line()


def test_progress_eta_uses_the_rate_of_this_run():
    now = [100.0]
    events = []
    # Resumed at segment 1 of two equal segments: half the work is already done.
    tracker = ProgressTracker(
        [10, 10], 20, events.append, start_segment=1, frames_done=10, clock=lambda: now[0]
    )
    now[0] += 5.0
    tracker.step(1, 2)  # a quarter of the job in 5 s -> another 5 s to go
    assert events[-1].fraction == pytest.approx(0.75)
    assert events[-1].eta_s == pytest.approx(5.0)
    assert (events[-1].segment, events[-1].frames_done) == (2, 10)


def test_a_renderer_returning_the_wrong_shape_is_reported():
    class Broken(FakeRenderer):
        def decode_segment(self, latents, frames):
            return super().decode_segment(latents, frames)[:-1]

    with pytest.raises(RuntimeError, match="expected uint8"):
        run(Broken(), pose_frames(12, H, W))
