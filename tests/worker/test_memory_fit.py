"""The worker fits each render into its GPU's memory and never retries an OOM with the same settings."""
from __future__ import annotations

import dataclasses

from model.memory_plan import GIB, estimate_peak_bytes
from tests.worker.fakes import StubRenderer, store_job
from worker.memory_fit import DoesNotFit, MemoryFit
from worker.render_job import Outcome, RetryRender, render_job


class Knobs:
    """The three settings the planner chooses, as the real pipeline holds them."""

    vae_chunk_size, cpu_offload, batch_guidance = 2, False, True


def peak_of(knobs: Knobs, height=768, width=512, frames=32) -> int:
    return estimate_peak_bytes(height, width, frames, dtype="fp16", batch_guidance=knobs.batch_guidance,
                               cpu_offload=knobs.cpu_offload, decode_chunk=knobs.vae_chunk_size)


def test_a_roomy_gpu_gets_the_fastest_plan_and_a_small_one_a_leaner_plan():
    roomy, small = Knobs(), Knobs()
    MemoryFit(80 * GIB, "fp16").apply(roomy, 768, 512, 32)
    assert (roomy.cpu_offload, roomy.batch_guidance, roomy.vae_chunk_size) == (False, True, 8)
    budget = 12 * GIB
    MemoryFit(budget, "fp16").apply(small, 768, 512, 32)
    assert peak_of(small) <= budget < peak_of(roomy)


def test_after_an_oom_the_next_plan_differs_and_needs_less():
    fit, knobs = MemoryFit(80 * GIB, "fp16"), Knobs()
    seen = []
    while True:
        fit.apply(knobs, 768, 512, 32)
        seen.append((knobs.vae_chunk_size, knobs.cpu_offload, knobs.batch_guidance, peak_of(knobs)))
        assert fit.after_out_of_memory()
        try:
            fit.apply(knobs, 768, 512, 32)
        except DoesNotFit as exc:
            assert "lower height/width or segment_frames" in str(exc)
            break
        assert peak_of(knobs) < seen[-1][3]  # strictly leaner: never the settings that failed
    assert len(seen) >= 2 and len(set(seen)) == len(seen)


def test_a_cpu_render_has_no_budget_and_is_left_alone():
    knobs = Knobs()
    assert MemoryFit(None, "fp32").apply(knobs, 768, 512, 32) is None
    assert (knobs.vae_chunk_size, knobs.cpu_offload, knobs.batch_guidance) == (2, False, True)


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the worker matches by name."""


class OutOfMemoryRenderer(StubRenderer, Knobs):
    def render_segment(self, *args, **kwargs):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_an_oom_without_a_leaner_plan_fails_at_once(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0)
    ctx = make_context(OutOfMemoryRenderer(), max_attempts=5)  # a CPU context: no plan to make leaner
    assert render_job(job.id, ctx) is Outcome.FAILED
    failed = jobs.get(job.id)
    assert failed.runs == 1 and failed.error.code == "out_of_memory"
    assert "lower height/width or segment_frames" in failed.error.message


def test_an_oom_retries_with_a_leaner_plan_then_fails_when_none_is_left(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0)
    renderer = OutOfMemoryRenderer()
    ctx = dataclasses.replace(make_context(renderer, max_attempts=50), memory=MemoryFit(80 * GIB, "fp16"))
    plans = []
    for _ in range(50):
        try:
            outcome = render_job(job.id, ctx)
        except RetryRender:
            plans.append((renderer.vae_chunk_size, renderer.cpu_offload, renderer.batch_guidance))
            continue
        break
    assert outcome is Outcome.FAILED and jobs.get(job.id).error.code == "out_of_memory"
    assert plans and len(set(plans)) == len(plans), "an OOM was retried with the settings that failed"
