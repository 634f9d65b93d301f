"""Progress of a long render: where it is, how much is done, and when it should finish.

The work of a segment is its number of frames times its denoising steps, so a short last
segment counts for less. The ETA extrapolates the rate measured in this run only, so a job
resumed at segment k does not count the earlier segments as instantly done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    segment: int  # 1-based number of the segment being rendered
    segments: int
    step: int  # denoising steps finished in this segment
    steps: int
    frames_done: int  # frames finished and handed to the output
    frames_total: int
    fraction: float  # of the whole job, in [0, 1]
    eta_s: float | None  # seconds left; None until there is a rate to extrapolate

    def line(self) -> str:
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f}s"
        return (
            f"segment {self.segment}/{self.segments} step {self.step}/{self.steps} "
            f"frames {self.frames_done}/{self.frames_total} {100 * self.fraction:.1f}% eta {eta}"
        )


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    """Turns per-step reports of the renderer into `Progress` events for a listener."""

    def __init__(
        self,
        segment_lengths: Sequence[int],
        frames_total: int,
        listener: ProgressCallback | None,
        *,
        start_segment: int = 0,
        frames_done: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lengths = list(segment_lengths)
        self._total_work = float(sum(self._lengths))
        self._frames_total = frames_total
        self._listener = listener
        self._clock = clock
        self._segment = start_segment
        self._frames_done = frames_done
        self._steps = 1  # the renderer's own step count (30 DDIM steps visit 31), learnt from its reports
        self._start_time = clock()
        self._start_fraction = self._fraction(start_segment, 0, 1)

    def step(self, step: int, steps: int) -> None:
        """The renderer finished denoising step `step` of `steps` in the current segment."""
        self._steps = steps
        self._emit(step, steps)

    def segment_done(self, frames_done: int) -> None:
        """The current segment is finished and `frames_done` frames are out; the next one starts."""
        self._frames_done = frames_done
        self._emit(self._steps, self._steps)
        self._segment += 1

    def _fraction(self, segment: int, step: int, steps: int) -> float:
        done = sum(self._lengths[:segment]) + self._lengths[segment] * step / max(steps, 1)
        return min(1.0, done / self._total_work)

    def _emit(self, step: int, steps: int) -> None:
        if self._listener is None:
            return
        fraction = self._fraction(self._segment, step, steps)
        gained = fraction - self._start_fraction
        elapsed = self._clock() - self._start_time
        eta = elapsed * (1.0 - fraction) / gained if gained > 0 else None
        self._listener(
            Progress(
                segment=self._segment + 1,
                segments=len(self._lengths),
                step=step,
                steps=steps,
                frames_done=self._frames_done,
                frames_total=self._frames_total,
                fraction=fraction,
                eta_s=eta,
            )
        )
