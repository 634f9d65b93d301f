"""Where the pipeline's random numbers come from.

Every Gaussian draw of a render (the VAE posterior sample of the reference, the start noise, the
offset noise) goes through a `NoiseSource`, named by its role. Production uses `SeededNoise`: a CPU
`torch.Generator`, so a seed gives the same draws on any device. `RecordedNoise` hands out tensors
recorded elsewhere in order (e.g. the draws of the original implementation stored in a reference
fixture), which is how the conformance runner reproduces a recorded run through the production path.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

# The roles the pipeline draws, in the order the original's short entrance draws them.
POSTERIOR_SAMPLE = "vae_posterior_sample"
START_NOISE = "start_noise"
OFFSET_NOISE = "offset_noise"


@runtime_checkable
class NoiseSource(Protocol):
    def randn(self, shape: Sequence[int], role: str) -> torch.Tensor:
        """A float32 CPU tensor of standard normal values with exactly `shape`."""
        ...


class SeededNoise:
    """Draws from one CPU generator seeded once: consecutive draws continue the same stream."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def randn(self, shape: Sequence[int], role: str) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32)


@dataclass(frozen=True)
class Draw:
    role: str
    tensor: torch.Tensor


class RecordedNoise:
    """Replays recorded draws in order; a draw of another role or shape is an error, not a guess.

    Draws the pipeline never asks for (the original draws step noise that eta = 0 multiplies by zero)
    are listed by `unused()` so that a caller can check they are only those.
    """

    def __init__(self, draws: Iterable[Draw]) -> None:
        self._draws = list(draws)
        self._next = 0

    def randn(self, shape: Sequence[int], role: str) -> torch.Tensor:
        if self._next >= len(self._draws):
            raise LookupError(f"no recorded draw left for {role} {list(shape)}")
        draw = self._draws[self._next]
        if draw.role != role or tuple(draw.tensor.shape) != tuple(shape):
            raise LookupError(
                f"draw {self._next} was recorded as {draw.role} {list(draw.tensor.shape)}, "
                f"the pipeline asks for {role} {list(shape)}"
            )
        self._next += 1
        return draw.tensor.to(torch.float32).clone()

    def unused(self) -> list[Draw]:
        return self._draws[self._next:]
