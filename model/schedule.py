"""The noise schedule UniAnimate was trained with, and the DDIM timesteps its sampler visits.

UniAnimate uses Stable Diffusion's "scaled linear" betas, rescaled to zero terminal SNR
(Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed") so that the
last timestep is pure noise, and a v-predicting UNet. Everything here is float64, as in the
original; the sampler casts the values to the latent's dtype when it uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NUM_TIMESTEPS = 1000


def linear_sd_betas(num_timesteps: int, init_beta: float, last_beta: float) -> torch.Tensor:
    """Stable Diffusion's betas: evenly spaced in sqrt(beta), then squared (float64)."""
    return torch.linspace(init_beta**0.5, last_beta**0.5, num_timesteps, dtype=torch.float64) ** 2


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas whose last cumulative alpha is exactly 0, with the first one unchanged.

    sqrt(alpha_bar) is shifted down so that it ends at 0 and stretched so that it starts where it
    did; the betas are then read back from the ratios of consecutive alpha_bar values, which makes
    the last beta exactly 1.
    """
    sqrt_alpha_bar = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    sqrt_alpha_bar = (sqrt_alpha_bar - last) * (first / (first - last))
    alpha_bar = sqrt_alpha_bar**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


@dataclass(frozen=True)
class NoiseSchedule:
    """betas and cumulative alphas (float64, one entry per training timestep)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> NoiseSchedule:
        betas = betas.to(torch.float64)
        if not (betas.min() > 0 and betas.max() <= 1):
            raise ValueError("betas must lie in (0, 1]")
        return cls(betas=betas, alphas_cumprod=torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def linear_sd(
        cls,
        num_timesteps: int = NUM_TIMESTEPS,
        init_beta: float = 0.00085,
        last_beta: float = 0.012,
        zero_terminal_snr: bool = True,
    ) -> NoiseSchedule:
        """UniAnimate's schedule (the defaults are its inference configs)."""
        betas = linear_sd_betas(num_timesteps, init_beta, last_beta)
        # The original only rescales a schedule that does not already end at beta = 1.
        if zero_terminal_snr and abs(float(betas.max()) - 1.0) > 1e-4:
            betas = rescale_zero_terminal_snr(betas)
        return cls.from_betas(betas)

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    @property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        return self.alphas_cumprod.sqrt()

    @property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        return (1.0 - self.alphas_cumprod).sqrt()

    def q_sample(self, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise (x0 broadcasts over noise)."""
        self._check_timestep(t)
        return (
            at(self.sqrt_alphas_cumprod, t, x0) * x0 + at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def _check_timestep(self, t: int) -> None:
        if not 0 <= t < self.num_timesteps:
            raise ValueError(f"timestep {t} is outside 0..{self.num_timesteps - 1}")


def at(table: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    """table[t] as a 0-dim tensor in `like`'s dtype and device.

    The original indexes its float64 tables and casts the value to the latent's dtype before any
    arithmetic, so that in float32/float16 the products round exactly as there.
    """
    return table[t].to(dtype=like.dtype, device=like.device)


def ddim_timesteps(num_steps: int, num_timesteps: int = NUM_TIMESTEPS) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs the original DDIM loop visits, from noisiest to cleanest.

    stride = num_timesteps // num_steps; t runs over 1, 1 + stride, 1 + 2*stride, ... (< num_timesteps
    + 1, clamped to num_timesteps - 1), in decreasing order, and t_prev = max(t - stride, 0). There
    are ceil(num_timesteps / stride) steps, which is not always `num_steps` (30 -> 31, 7 -> 8). The
    last step lands on the noise level of t = 0, not on alpha_bar = 1. For some counts (27, 36, 37,
    and every count above 250) the first t is clamped to num_timesteps - 1, where alpha_bar = 0; for
    counts above num_timesteps / 2 the stride is 1 and that first t even appears twice, as in the
    original.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        raise TypeError(f"num_steps must be an int, got {type(num_steps).__name__}")
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be between 1 and {num_timesteps}, got {num_steps}")
    stride = num_timesteps // num_steps
    visited = [min(1 + k, num_timesteps - 1) for k in range(0, num_timesteps, stride)]
    return [(t, max(t - stride, 0)) for t in reversed(visited)]
