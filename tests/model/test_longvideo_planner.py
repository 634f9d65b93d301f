from itertools import pairwise

import pytest

from model import schedule
from model.longvideo import chain
from model.longvideo.chain import SamplingOptions
from model.longvideo.planner import plan_segments
from model.longvideo.seeds import segment_seed
from model.longvideo.video import RenderOptions


@pytest.mark.parametrize("total", [1, 2, 31, 32, 33, 40, 63, 64, 150, 900, 901])
@pytest.mark.parametrize("segment_frames", [2, 8, 32])
def test_segments_cover_every_frame_once_and_share_one_frame(total, segment_frames):
    plan = plan_segments(total, segment_frames)
    segments = plan.segments
    assert segments[0].start == 0 and segments[-1].stop == total
    assert sum(s.new_frames for s in segments) == total
    for previous, current in pairwise(segments):
        assert current.start == previous.stop - 1  # starts on the previous segment's last frame
        assert current.first_new == previous.stop
    assert all(1 <= s.length <= segment_frames for s in segments)
    # No runt last segment: new frames per segment differ by at most one.
    added = [s.length - 1 for s in segments]
    assert max(added) - min(added) <= 1


def test_a_minute_at_15_fps_is_29_full_segments():
    plan = plan_segments(900, 32)
    assert len(plan) == 29
    assert {s.length for s in plan.segments} == {32}


def test_short_tail_is_spread_instead_of_padded():
    # 40 frames in 32-frame segments: not 32 + a 9-frame remainder, but two near-equal halves.
    assert [s.length for s in plan_segments(40, 32).segments] == [21, 20]


def test_clip_shorter_than_a_segment_is_one_segment_of_its_own_length():
    (only,) = plan_segments(20, 32).segments
    assert (only.start, only.stop, only.chained) == (0, 20, False)


def test_frames_before_counts_written_frames():
    plan = plan_segments(100, 32)
    assert [plan.frames_before(i) for i in range(len(plan))] == [s.first_new for s in plan.segments]
    assert plan.frames_before(1) == plan.segments[0].length


@pytest.mark.parametrize("total, segment_frames", [(0, 32), (10, 1), (-3, 32)])
def test_bad_plans_are_refused(total, segment_frames):
    with pytest.raises(ValueError, match="total_frames|segment_frames"):
        plan_segments(total, segment_frames)


def test_segment_seeds_start_at_the_job_seed_and_differ():
    seeds = [segment_seed(1234, k) for k in range(50)]
    assert seeds[0] == 1234
    assert len(set(seeds)) == 50
    assert all(0 <= s < 2**63 for s in seeds)
    assert [segment_seed(1234, k) for k in range(50)] == seeds
    assert segment_seed(1235, 1) != segment_seed(1234, 1)


def test_segment_seed_derivation_is_pinned():
    # Resuming a job on another machine or release must draw the same noise: the derivation
    # is part of the storage format and must never change.
    assert segment_seed(7, 1) == 8256300322685518191


def test_segment_seed_rejects_out_of_range():
    with pytest.raises(ValueError, match="seed"):
        segment_seed(-1, 0)
    with pytest.raises(ValueError, match="index"):
        segment_seed(1, -1)


@pytest.mark.parametrize("bad, message", [
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"), ({"steps": 0}, "steps"), ({"steps": 1001}, "steps"),
    ({"noise_prior_t": 1000}, "noise_prior_t"), ({"noise_prior_t": -1}, "noise_prior_t"),
    ({"guidance_scale": float("nan")}, "guidance_scale"), ({"guidance_scale": -1.0}, "guidance_scale"),
])
def test_sampling_options_refuse_values_the_sampler_cannot_use(bad, message):
    with pytest.raises(ValueError, match=message):
        SamplingOptions(**bad)


@pytest.mark.parametrize("bad, message", [({"segment_frames": 1}, "segment_frames"), ({"crf": 52}, "crf"),
                                          ({"crf": -1}, "crf")])
def test_render_options_refuse_values_the_renderer_cannot_use(bad, message):
    with pytest.raises(ValueError, match=message):
        RenderOptions(**bad)


def test_the_step_bound_is_the_schedules_length():
    assert chain.NUM_TIMESTEPS == schedule.NUM_TIMESTEPS
