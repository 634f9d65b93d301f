"""The noise schedule and DDIM timesteps against the original's fixture and its documented quirks."""

from __future__ import annotations

import pytest
import torch

from model.conformance import check_file
from model.schedule import NoiseSchedule, ddim_timesteps


def test_schedule_fixture_replays(reference):
    result = check_file(reference / "fixtures" / "schedule.pt")
    assert result.passed, result.detail


def test_zero_terminal_snr_ends_in_pure_noise():
    schedule = NoiseSchedule.linear_sd()
    assert schedule.betas[-1].item() == 1.0
    assert schedule.alphas_cumprod[-1].item() == 0.0
    assert schedule.alphas_cumprod[0].item() == pytest.approx(0.99915, abs=1e-12)
    assert schedule.betas.dtype == torch.float64


def test_without_rescale_the_last_alpha_bar_is_positive():
    schedule = NoiseSchedule.linear_sd(zero_terminal_snr=False)
    assert schedule.alphas_cumprod[-1].item() > 0
    assert schedule.betas[-1].item() == pytest.approx(0.012)


def test_thirty_steps_visit_thirty_one_timesteps():
    pairs = ddim_timesteps(30)
    assert len(pairs) == 31
    assert pairs[0] == (991, 958)
    assert pairs[-1] == (1, 0)
    assert all(t - t_prev == 33 for t, t_prev in pairs[:-1])


def test_step_counts_that_start_at_t999():
    assert ddim_timesteps(27)[0][0] == 999
    assert ddim_timesteps(25)[0][0] == 961


def test_stride_one_visits_t999_twice_like_the_original():
    pairs = ddim_timesteps(600)
    assert pairs[:2] == [(999, 998), (999, 998)]
    assert len(pairs) == 1000


@pytest.mark.parametrize("bad", [0, -3, 1001])
def test_bad_step_counts_are_rejected(bad):
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(bad)


def test_non_integer_step_count_is_rejected():
    with pytest.raises(TypeError):
        ddim_timesteps(30.0)  # type: ignore[arg-type]


def test_q_sample_at_the_last_timestep_is_the_noise():
    schedule = NoiseSchedule.linear_sd()
    x0, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    assert torch.equal(schedule.q_sample(x0, 999, noise), noise)
    with pytest.raises(ValueError, match="timestep"):
        schedule.q_sample(x0, 1000, noise)
