"""DDIM sampling with classifier-free guidance, and the noise prior UniAnimate starts from.

This reproduces `DiffusionDDIM.ddim_sample_loop` of the original as its inference entrances call it:
eta = 0, a v-predicting model, guidance `uncond + g * (cond - uncond)` on the model output, no
clamping or thresholding. The model is called conditional first, then unconditional (every condition
None), exactly as there; batching the two calls into one is an option with the same result.

One deliberate difference: at alpha_bar = 0 (t = 999, visited first for some step counts such as 27,
36 and 37) the original computes the noise estimate as inf/inf and returns an all-NaN video. We use the
v-parameterisation's own identity eps = sqrt(a) * v + sqrt(1 - a) * x_t, which is the same quantity
wherever the original's formula is defined and gives eps = x_t (the sample is pure noise) at a = 0.
See docs/sampler.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from model.errors import RenderCancelled
from model.schedule import NoiseSchedule, ddim_timesteps

# model_fn(x_t, t, **conditions) -> predicted v, same shape as x_t; t is an int64 tensor [batch].
ModelFn = Callable[..., torch.Tensor]
# velocity_fn(x_t, t) -> the guided v for x_t (all the model calls of one denoising step).
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Conditions = Mapping[str, "torch.Tensor | None"]
ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

# In batched mode the model gets this keyword: a bool tensor [batch], True for the rows it must
# compute as if every condition were None (the unconditional half of classifier-free guidance).
UNCONDITIONAL_ROWS = "unconditional"


def classifier_free_guidance(
    model_fn: ModelFn,
    *,
    guidance_scale: float,
    cond_kwargs: Conditions,
    uncond_kwargs: Conditions,
    batch_cond_uncond: bool = False,
) -> VelocityFn:
    """The guided velocity u + g * (c - u) for whole latents (no frame windows).

    With `batch_cond_uncond` the two predictions come from one model call on [x_t; x_t] (see
    `predict_cond_uncond`), which is faster on a GPU and gives the same result.
    """

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = predict_cond_uncond(model_fn, x_t, t, cond_kwargs, uncond_kwargs, batch_cond_uncond)
        return guide(cond, uncond, guidance_scale)

    return velocity


def predict_cond_uncond(
    model_fn: ModelFn,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond_kwargs: Conditions,
    uncond_kwargs: Conditions,
    batched: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional and the unconditional model output for the same x_t and t.

    Separate (default, as the original): model_fn(x_t, t, **cond_kwargs), then
    model_fn(x_t, t, **uncond_kwargs). Batched: one call on x_t stacked twice along the batch axis,
    every condition tensor stacked twice likewise, and `unconditional=` a bool mask that is True for
    the second half; the model must then treat those rows as if all their conditions were None. The
    unconditional kwargs must all be None for that (they are in UniAnimate).
    """
    if not batched:
        return model_fn(x_t, t, **cond_kwargs), model_fn(x_t, t, **uncond_kwargs)
    present = [key for key, value in uncond_kwargs.items() if value is not None]
    if present:
        raise ValueError(f"batched guidance needs every unconditional input to be None; got {present}")
    rows = x_t.shape[0]
    doubled = {
        key: None if value is None else torch.cat([value, value]) for key, value in cond_kwargs.items()
    }
    # a CPU mask: the model reads it on the host, which must never wait for the GPU
    unconditional = torch.arange(2 * rows) >= rows
    out = model_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), **doubled, **{UNCONDITIONAL_ROWS: unconditional})
    cond, uncond = out.split(rows)
    return cond, uncond


def guide(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on every channel, in the original's order of operations."""
    return uncond + guidance_scale * (cond - uncond)


@dataclass(frozen=True)
class StepTables:
    """The schedule tables a DDIM step reads, cast to the latent's dtype and put on its device once.

    Indexing them with a Python int is a view of device memory; reading a float64 CPU table every
    step would be a host-to-device copy, which on CUDA waits for all queued work (a sync per step).
    Casting the table first and indexing after gives the same numbers as `schedule.at` (the cast is
    elementwise).
    """

    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def like(cls, schedule: NoiseSchedule, x: torch.Tensor) -> StepTables:
        def put(table: torch.Tensor) -> torch.Tensor:
            return table.to(dtype=x.dtype).to(device=x.device)

        return cls(put(schedule.sqrt_alphas_cumprod), put(schedule.sqrt_one_minus_alphas_cumprod),
                   put(schedule.alphas_cumprod))


def ddim_step(
    schedule: NoiseSchedule | StepTables, x_t: torch.Tensor, v: torch.Tensor, t: int, t_prev: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0) from a v prediction: returns (x_prev, x0 estimate).

    With a = alpha_bar_t: x0 = sqrt(a) x_t - sqrt(1-a) v and eps = sqrt(a) v + sqrt(1-a) x_t, then
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps. The original computes eps as
    (x_t / sqrt(a) - x0) / sqrt(1/a - 1), algebraically the same but inf/inf = NaN at a = 0; this
    form is exact there (eps = x_t) and better conditioned near it. No fresh noise is drawn: the
    original draws randn_like(x_t) every step only to multiply it by sigma = 0.
    """
    tables = schedule if isinstance(schedule, StepTables) else StepTables.like(schedule, x_t)
    sqrt_a = tables.sqrt_alphas_cumprod[t]
    sqrt_one_minus_a = tables.sqrt_one_minus_alphas_cumprod[t]
    x0 = sqrt_a * x_t - sqrt_one_minus_a * v
    eps = sqrt_a * v + sqrt_one_minus_a * x_t
    a_prev = tables.alphas_cumprod[t_prev]
    return torch.sqrt(a_prev) * x0 + torch.sqrt(1 - a_prev) * eps, x0


@dataclass(frozen=True)
class DDIMStep:
    """What one finished denoising step produced (index counts from 0)."""

    index: int
    total: int
    t: int
    t_prev: int
    x_prev: torch.Tensor
    x0: torch.Tensor


@torch.no_grad()
def ddim_steps(
    velocity_fn: VelocityFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int,
    should_cancel: CancelFn | None = None,
) -> Iterator[DDIMStep]:
    """Runs the DDIM loop lazily, yielding every step; `should_cancel` is asked before each step.

    Raises model.errors.RenderCancelled as soon as `should_cancel()` returns True, so a cancel is
    honoured within one step. Nothing in the loop reads a device value on the host (the schedule is
    on the device, the timesteps are Python ints), so on a GPU the host queues steps ahead of it; a
    host-side `should_cancel` and the progress callbacks never wait for the GPU.
    """
    pairs = ddim_timesteps(num_steps, schedule.num_timesteps)
    tables = StepTables.like(schedule, x_T)
    x = x_T
    for index, (t, t_prev) in enumerate(pairs):
        if should_cancel is not None and should_cancel():
            raise RenderCancelled(f"cancelled before denoising step {index + 1} of {len(pairs)}")
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x, x0 = ddim_step(tables, x, velocity_fn(x, t_batch), t, t_prev)
        yield DDIMStep(index, len(pairs), t, t_prev, x, x0)


def run_ddim(
    velocity_fn: VelocityFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """The last sample of `ddim_steps`; progress(step_index, total_steps) is called after each step.

    step_index counts from 0, so the last call is progress(total - 1, total). total is the number of
    steps actually visited (31 for num_steps = 30).
    """
    x = x_T
    for step in ddim_steps(velocity_fn, x_T, schedule, num_steps=num_steps, should_cancel=should_cancel):
        x = step.x_prev
        if progress is not None:
            progress(step.index, step.total)
    return x


def ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int,
    guidance_scale: float,
    cond_kwargs: Conditions,
    uncond_kwargs: Conditions,
    batch_cond_uncond: bool = False,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """Denoises x_T with guided DDIM (eta 0) and returns the sample at the noise level of t = 0.

    model_fn(x, t, **kwargs) -> v, with t an int64 tensor [batch] of raw timesteps (0..999). The
    result keeps sqrt(1 - alpha_bar_0) ~ 0.029 of the predicted noise, as the original's does.
    """
    velocity = classifier_free_guidance(
        model_fn,
        guidance_scale=guidance_scale,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        batch_cond_uncond=batch_cond_uncond,
    )
    return run_ddim(
        velocity, x_T, schedule, num_steps=num_steps, progress=progress, should_cancel=should_cancel
    )


def noise_prior(
    noise: torch.Tensor,
    offset_noise: torch.Tensor,
    ref_latent: torch.Tensor,
    schedule: NoiseSchedule,
    t: int,
    order: Literal["long", "short"] = "long",
    strength: float = 0.1,
) -> torch.Tensor:
    """The starting latent of the original's entrances: the reference latent noised to step t, plus offset noise.

    noise [B,C,F,h,w] is Gaussian; offset_noise [B,C,F,1,1] is Gaussian (one value per frame and
    channel); ref_latent [B,C,1,h,w] (or already repeated over F) is the VAE latent of the reference.
    - "long" (inference_unianimate_long_entrance.py, t 939): q_sample(ref, t, noise) + strength * offset.
    - "short" (inference_unianimate_entrance.py, t 949): q_sample(ref, t, noise + strength * offset),
      so there the offset is scaled by sqrt(1 - alpha_bar_t).
    """
    if order == "long":
        return schedule.q_sample(ref_latent, t, noise) + strength * offset_noise
    if order == "short":
        return schedule.q_sample(ref_latent, t, noise + strength * offset_noise)
    raise ValueError(f"order must be 'long' or 'short', got {order!r}")
