"""`python -m tests.chaos.faulty_worker worker ...`: the real render worker (`cli.main`) with one fault
injected into its model: rendering any segment of a job seeded with POISON_SEED kills the process
with SIGKILL, as an out-of-memory kill or a segfault in a CUDA kernel would. Other jobs render
normally. This is how the chaos tests make a job that crashes every worker that takes it.
"""
from __future__ import annotations

import os
import signal
import sys

from cli.main import main
from model.longvideo.seeds import segment_seed
from worker import celery_app
from worker.renderer_loader import load_renderer

POISON_SEED = 4_040_404
_POISONED = frozenset(segment_seed(POISON_SEED, index) for index in range(64))


class PoisonedRenderer:
    """Delegates everything to the real renderer, except a poisoned segment, which kills the process."""

    def __init__(self, renderer) -> None:
        self._renderer = renderer

    def __getattr__(self, name: str):
        return getattr(self._renderer, name)

    def render_segment(self, *args, seed: int, **kwargs):
        if seed in _POISONED:
            os.kill(os.getpid(), signal.SIGKILL)
        return self._renderer.render_segment(*args, seed=seed, **kwargs)

    def denoise_segment(self, *args, seed: int, **kwargs):  # what the chained renderer calls
        if seed in _POISONED:
            os.kill(os.getpid(), signal.SIGKILL)
        return self._renderer.denoise_segment(*args, seed=seed, **kwargs)


def poisoned_renderer(settings, process_index: int = 0) -> PoisonedRenderer:
    return PoisonedRenderer(load_renderer(settings, process_index))


if __name__ == "__main__":
    celery_app.renderer_factory = poisoned_renderer
    sys.exit(main(sys.argv[1:]))
