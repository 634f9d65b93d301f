"""Guided DDIM and the noise prior: fixture replay plus the behaviour the pipeline relies on."""

from __future__ import annotations

import pytest
import torch

from model.conformance import check_file
from model.conformance.sampler import ToyVelocityModel
from model.errors import RenderCancelled
from model.sampler import ddim_sample, ddim_step, noise_prior
from model.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule.linear_sd()


def _toy() -> ToyVelocityModel:
    return ToyVelocityModel(0.5, 0.3, 0.4, 0.2, 0.1)


def _inputs(batch: int = 1, frames: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, 4, frames, 4, 4, generator=g, dtype=torch.float64)
    cond = {
        "image": torch.randn(batch, 1, 8, generator=g, dtype=torch.float64),
        "randomref": torch.randn(batch, 4, 1, 4, 4, generator=g, dtype=torch.float64).repeat(
            1, 1, frames, 1, 1
        ),
        "dwpose": torch.rand(batch, 3, frames + 1, 4, 4, generator=g, dtype=torch.float64),
    }
    return noise, cond, dict.fromkeys(cond)


def _sample(model, noise, cond, uncond, **options):
    options.setdefault("num_steps", 10)
    return ddim_sample(
        model, noise, SCHEDULE, guidance_scale=2.5, cond_kwargs=cond, uncond_kwargs=uncond, **options
    )


def test_ddim_fixture_replays(reference):
    result = check_file(reference / "fixtures" / "ddim_toy.pt")
    assert result.passed, result.detail


@pytest.mark.parametrize("num_steps", [27, 36, 37])
def test_step_counts_through_t999_give_finite_samples(num_steps):
    noise, cond, uncond = _inputs()
    sample = _sample(_toy(), noise, cond, uncond, num_steps=num_steps)
    assert torch.isfinite(sample).all()


def test_the_t999_step_treats_x_t_as_pure_noise():
    x, v = torch.randn(1, 4, 2, 3, 3, dtype=torch.float64), torch.randn(1, 4, 2, 3, 3, dtype=torch.float64)
    x_prev, x0 = ddim_step(SCHEDULE, x, v, 999, 962)
    a_prev = SCHEDULE.alphas_cumprod[962]
    assert torch.equal(x0, -v)
    torch.testing.assert_close(x_prev, a_prev.sqrt() * -v + (1 - a_prev).sqrt() * x, rtol=0, atol=1e-15)


def test_model_is_called_conditional_then_unconditional_each_step():
    model = _toy()
    noise, cond, uncond = _inputs()
    _sample(model, noise, cond, uncond, num_steps=5)
    assert [kind for _, kind in model.calls] == ["cond", "uncond"] * 5
    assert [t for t, _ in model.calls] == [801, 801, 601, 601, 401, 401, 201, 201, 1, 1]


@pytest.mark.parametrize("batch", [1, 2])
def test_batched_cond_uncond_equals_separate_calls(batch):
    noise, cond, uncond = _inputs(batch=batch)
    separate = _sample(_toy(), noise, cond, uncond)
    model = _toy()
    batched = _sample(model, noise, cond, uncond, batch_cond_uncond=True)
    assert {kind for _, kind in model.calls} == {"batched"}
    assert len(model.calls) == 10
    torch.testing.assert_close(batched, separate, rtol=0, atol=1e-12)


def test_batched_mode_refuses_unconditional_tensors():
    noise, cond, _ = _inputs()
    with pytest.raises(ValueError, match="unconditional"):
        _sample(_toy(), noise, cond, {"image": cond["image"]}, batch_cond_uncond=True)


def test_cancellation_raises_within_one_step():
    model = _toy()
    noise, cond, uncond = _inputs()
    answers = iter([False, False, True])
    with pytest.raises(RenderCancelled):
        _sample(model, noise, cond, uncond, should_cancel=lambda: next(answers))
    assert len(model.calls) == 4  # two finished steps, nothing of the third


def test_progress_is_reported_once_per_visited_step():
    noise, cond, uncond = _inputs()
    seen: list[tuple[int, int]] = []
    _sample(_toy(), noise, cond, uncond, num_steps=30, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 31) for i in range(31)]


def test_sampling_keeps_the_latent_dtype():
    noise, cond, uncond = _inputs()
    cond32 = {k: v.float() for k, v in cond.items()}
    sample = _sample(_toy(), noise.float(), cond32, uncond, num_steps=4)
    assert sample.dtype == torch.float32


def test_noise_prior_orders_differ_only_in_how_the_offset_is_scaled():
    noise, offset, ref = torch.randn(1, 4, 3, 4, 4), torch.randn(1, 4, 3, 1, 1), torch.randn(1, 4, 1, 4, 4)
    long = noise_prior(noise, offset, ref, SCHEDULE, 939, order="long")
    short = noise_prior(noise, offset, ref, SCHEDULE, 939, order="short")
    sqrt_one_minus = SCHEDULE.sqrt_one_minus_alphas_cumprod[939].float()
    torch.testing.assert_close(long - short, (0.1 * offset * (1 - sqrt_one_minus)).expand_as(noise))
    torch.testing.assert_close(
        noise_prior(noise, offset, ref, SCHEDULE, 939, strength=0.0), SCHEDULE.q_sample(ref, 939, noise)
    )


def test_noise_prior_rejects_unknown_order():
    x = torch.zeros(1, 4, 2, 2, 2)
    with pytest.raises(ValueError, match="order"):
        noise_prior(x, x[..., :1, :1], x[:, :, :1], SCHEDULE, 939, order="middle")  # type: ignore[arg-type]
