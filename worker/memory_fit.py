"""Fitting each render into its GPU's memory: the planner picks the settings before a job runs, and
a CUDA out-of-memory error makes the next run leaner instead of trying the same settings again.

`model.memory_plan` predicts the peak of one segment from the tensor sizes involved; `choose_plan`
returns the fastest settings (VAE/CLIP resident or offloaded, guidance batched or in two calls, VAE
decode chunk) whose peak fits a budget. The budget starts at the device's memory (or
UNIANIMATE_GPU_MEMORY_BUDGET_GB) and shrinks below the failed plan's predicted peak after each OOM,
so a retry can never run with the settings that just failed; when nothing smaller fits, the job
fails with a message that names the parameters to lower.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from model.memory_plan import GIB, Plan, choose_plan

log = logging.getLogger(__name__)
AFTER_OOM = 0.9  # the next budget, as a share of the predicted peak of the plan that ran out of memory


class DoesNotFit(ValueError):
    """No settings this worker can choose fit the request into its GPU."""


@dataclass
class MemoryFit:
    """The memory budget of one render process, and the plan it last applied."""

    budget_bytes: int | None  # None: no GPU budget to respect (CPU renders)
    dtype: str  # "fp16", "bf16" or "fp32": what the UNet weights and activations are held in
    prefer_batch_guidance: bool = True
    last_plan: Plan | None = None

    def apply(self, renderer: object, height: int, width: int, frames: int) -> Plan | None:
        """Set the renderer's decode chunk, offload and guidance to the fastest plan that fits."""
        if self.budget_bytes is None or not hasattr(renderer, "vae_chunk_size"):
            return None  # a CPU, or a stand-in renderer without these settings
        plan = choose_plan(self.budget_bytes, height, width, frames, dtype=self.dtype,
                           prefer_batch_guidance=self.prefer_batch_guidance)
        if plan is None:
            raise DoesNotFit(f"a {height}x{width} segment of {frames} frames does not fit this worker's "
                             f"{self.budget_bytes / GIB:.1f} GiB of GPU memory; lower height/width or "
                             "segment_frames")
        renderer.vae_chunk_size = plan.decode_chunk
        renderer.cpu_offload = plan.cpu_offload
        renderer.batch_guidance = plan.batch_guidance
        self.last_plan = plan
        return plan

    def after_out_of_memory(self) -> bool:
        """Shrink the budget below the plan that failed; False when there was no plan to shrink
        (then a retry would run the same settings, so the job must fail instead)."""
        if self.last_plan is None:
            return False
        self.budget_bytes = int(self.last_plan.peak_bytes * AFTER_OOM)
        log.warning("CUDA ran out of memory with %s; the next run plans for %.1f GiB", self.last_plan,
                    self.budget_bytes / GIB)
        self.last_plan = None
        return True


def is_out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError, matched by name: the render job module does not import torch
    return type(exc).__name__ == "OutOfMemoryError"
