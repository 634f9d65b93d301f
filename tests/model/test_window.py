"""Sliding-window sampling: fixture replay, window planning and the cases the original got wrong."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.conformance import check_file
from model.conformance.sampler import ToyVelocityModel
from model.errors import RenderCancelled
from model.sampler import ddim_sample
from model.schedule import NoiseSchedule
from model.window import coverage_counts, plan_windows, window_conditions, window_ddim_sample

SCHEDULE = NoiseSchedule.linear_sd()


def _toy() -> ToyVelocityModel:
    return ToyVelocityModel(0.5, 0.3, 0.4, 0.2, 0.1)


def _inputs(frames: int, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, 4, frames, 4, 4, generator=g, dtype=torch.float64)
    cond = {
        "image": torch.randn(batch, 1, 8, generator=g, dtype=torch.float64),
        "randomref": torch.randn(batch, 4, frames, 4, 4, generator=g, dtype=torch.float64),
        "dwpose": torch.rand(batch, 3, frames + 1, 4, 4, generator=g, dtype=torch.float64),
    }
    return noise, cond, dict.fromkeys(cond)


def _window_sample(model, noise, cond, uncond, **options):
    options = {"context_size": 8, "context_overlap": 2, "num_steps": 5, **options}
    return window_ddim_sample(
        model, noise, SCHEDULE, guidance_scale=2.5, cond_kwargs=cond, uncond_kwargs=uncond, **options
    )


def test_long_fixture_replays(reference):
    result = check_file(reference / "fixtures" / "ddim_long_toy.pt")
    assert result.passed, result.detail


def test_real_config_windows_for_100_frames():
    windows = plan_windows(100, 32, 8)
    assert [w[0] for w in windows] == [0, 24, 48, 68]
    assert windows[-1] == list(range(68, 100))


@pytest.mark.parametrize("frames", [1, 4, 8, 16, 20, 32])
def test_a_clip_no_longer_than_the_context_is_one_window(frames):
    assert plan_windows(frames, 32, 8) == [list(range(frames))]


@pytest.mark.parametrize("frames", [3, 8])
def test_short_clip_in_window_mode_equals_plain_sampling(frames):
    noise, cond, uncond = _inputs(frames)
    windowed = _window_sample(_toy(), noise, cond, uncond)
    plain = ddim_sample(
        _toy(), noise, SCHEDULE, num_steps=5, guidance_scale=2.5, cond_kwargs=cond, uncond_kwargs=uncond
    )
    assert torch.isfinite(windowed).all()
    torch.testing.assert_close(windowed, plain, rtol=0, atol=1e-12)


def test_dilated_passes_never_wrap_and_cover_everything():
    windows = plan_windows(100, 32, 8, stride=3)
    assert all(w == sorted(set(w)) and len(w) == 32 for w in windows)
    assert min(coverage_counts(windows, 100)) >= 1
    assert windows[-1] == list(range(36, 100, 2))  # dilation 4 would not fit in 100 frames


@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(1, 300),
    size=st.integers(1, 40),
    overlap_fraction=st.floats(0, 0.99),
    stride=st.integers(1, 4),
)
def test_every_plan_covers_each_frame_with_increasing_windows(frames, size, overlap_fraction, stride):
    overlap = int(overlap_fraction * size)
    windows = plan_windows(frames, size, overlap, stride)
    assert min(coverage_counts(windows, frames)) >= 1
    for window in windows:
        assert len(window) == min(size, frames)
        assert all(0 <= a < b < frames for a, b in itertools.pairwise(window)) and 0 <= window[0]


@pytest.mark.parametrize("bad", [{"overlap": 8}, {"overlap": -1}, {"size": 0}, {"stride": 0}, {"frames": 0}])
def test_bad_window_settings_are_rejected(bad):
    args = {"frames": 20, "size": 8, "overlap": 2, "stride": 1, **bad}
    with pytest.raises(ValueError):
        plan_windows(args["frames"], args["size"], args["overlap"], args["stride"])


def test_pose_windows_keep_the_reference_pose_in_front():
    pose = torch.arange(6.0).view(1, 1, 6, 1, 1)  # reference pose + 5 frames
    sliced = window_conditions(
        {"dwpose": pose, "image": torch.ones(1, 1, 2), "y": None}, [torch.tensor([2, 3])]
    )
    assert sliced["dwpose"].flatten().tolist() == [0.0, 3.0, 4.0]
    assert sliced["image"].shape == (1, 1, 2) and sliced["y"] is None


def test_batching_choices_do_not_change_the_result():
    noise, cond, uncond = _inputs(19)
    reference = _window_sample(_toy(), noise, cond, uncond)
    for options in (
        {"context_batch_size": 3},
        {"batch_cond_uncond": True},
        {"context_batch_size": 2, "batch_cond_uncond": True},
    ):
        torch.testing.assert_close(
            _window_sample(_toy(), noise, cond, uncond, **options), reference, rtol=0, atol=1e-12
        )


def test_latent_batch_rows_are_sampled_independently():
    noise, cond, uncond = _inputs(13, batch=2)
    both = _window_sample(_toy(), noise, cond, uncond, context_batch_size=2)
    for row in range(2):
        single = {k: v[row : row + 1] for k, v in cond.items()}
        alone = _window_sample(_toy(), noise[row : row + 1], single, uncond)
        torch.testing.assert_close(both[row : row + 1], alone, rtol=0, atol=1e-12)


def test_conditions_with_the_wrong_frame_count_are_rejected():
    noise, cond, uncond = _inputs(12)
    cond["dwpose"] = cond["dwpose"][:, :, 1:]
    with pytest.raises(ValueError, match="dwpose.*13 frames"):
        _window_sample(_toy(), noise, cond, uncond)


def test_window_sampler_reports_progress_and_honours_cancel():
    noise, cond, uncond = _inputs(12)
    seen: list[tuple[int, int]] = []
    _window_sample(_toy(), noise, cond, uncond, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(5)]
    model = _toy()
    with pytest.raises(RenderCancelled):
        _window_sample(model, noise, cond, uncond, should_cancel=lambda: len(model.calls) > 0)
    assert len(model.calls) == 4  # one step of two windows (cond + uncond each), then cancelled
