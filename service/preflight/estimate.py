"""How long a job would hold a GPU, and how much GPU memory it would need, per worker class.

Memory comes from the model's own planner (`model.memory_plan`, torch-free): for each class it picks
the settings a worker of that class would choose (`worker/memory_fit.py` asks the same function),
so "fits" here means a worker of that class will take the job. Time scales with denoising passes x
latent pixels x frames from a per-class figure. Neither is measured on a GPU yet: each class says so
(`calibrated_on`: "uncalibrated") until `bench/gpu_check.sh` has run on that device.
"""
from __future__ import annotations

from dataclasses import dataclass

from model.frame_size import resolve_frame_size
from model.longvideo.planner import SegmentPlan
from model.memory_plan import GIB, choose_plan, estimate_peak_bytes
from service.jobs.params import RenderParams

# one segment at the original's settings: 768x512, 32 frames (+1 reference) = the unit of work
_UNIT_VOLUME = (768 // 8) * (512 // 8) * 33


@dataclass(frozen=True)
class WorkerClass:
    name: str
    memory_gib: float
    step_s: float  # seconds per denoising step of one unit segment (both guidance passes)
    calibrated_on: str | None = None  # the device the figures were measured on; None: estimated


WORKER_CLASSES = {
    item.name: item for item in (
        WorkerClass("nvidia-h200-141gb", 141, step_s=1.0),
        WorkerClass("nvidia-h100-80gb", 80, step_s=1.1),
        WorkerClass("nvidia-a100-80gb", 80, step_s=1.9),
        WorkerClass("nvidia-l4-24gb", 24, step_s=6.5),
    )
}


def check_classes(names: tuple[str, ...]) -> None:
    """At start-up: a name the estimates cannot look up would otherwise fail every POST /animate."""
    unknown = [name for name in names if name not in WORKER_CLASSES]
    if unknown:
        raise ValueError(f"UNIANIMATE_WORKER_CLASSES names unknown worker class(es) {', '.join(unknown)}; "
                         f"known: {', '.join(WORKER_CLASSES)}")


def estimate(plan: SegmentPlan, params: RenderParams, classes: tuple[str, ...], *, height: int,
             width: int) -> list[dict]:
    """One entry per configured worker class: GPU seconds, peak GPU memory, whether it fits, and the
    memory settings a worker of that class would choose."""
    frames_rendered = sum(segment.length + 1 for segment in plan.segments)  # +1: the reference frame
    work = (height // 8) * (width // 8) * frames_rendered / _UNIT_VOLUME
    entries = []
    for name in classes:
        worker = WORKER_CLASSES[name]
        fit = choose_plan(int(worker.memory_gib * GIB), height, width, params.segment_frames, dtype="fp16")
        # nothing fits: report the leanest settings' peak, so the answer says by how much
        peak = fit.peak_bytes if fit else estimate_peak_bytes(
            height, width, params.segment_frames, dtype="fp16", batch_guidance=False, cpu_offload=True,
            decode_chunk=1)
        entries.append({
            "worker_class": name,
            "gpu_seconds": round(worker.step_s * params.steps * work, 1),
            "peak_gpu_memory_gib": round(peak / GIB, 2),
            "fits": fit is not None,
            "memory_settings": None if fit is None else {
                "decode_chunk": fit.decode_chunk, "cpu_offload": fit.cpu_offload,
                "batch_guidance": fit.batch_guidance},
            "calibrated_on": worker.calibrated_on or "uncalibrated",
        })
    return entries


def frame_size(image_width: int, image_height: int, params: RenderParams) -> tuple[int, int]:
    """(height, width) a worker renders a reference of this size at (params, or the photo's aspect)."""
    return resolve_frame_size(image_width, image_height, params.height, params.width)


def unfit_reason(params: RenderParams, classes: tuple[str, ...], *, height: int, width: int) -> str | None:
    """None when a worker of some configured class can render a segment of this size; otherwise
    what to change, naming the request's parameters (POST /animate answers it as a 422)."""
    budgets = [int(WORKER_CLASSES[name].memory_gib * GIB) for name in classes]
    if not budgets:
        return None

    def fits(frames: int, h: int, w: int) -> bool:
        return any(choose_plan(budget, h, w, frames, dtype="fp16") is not None for budget in budgets)

    if fits(params.segment_frames, height, width):
        return None
    largest = max(classes, key=lambda name: WORKER_CLASSES[name].memory_gib)
    frames = next((f for f in range(params.segment_frames - 1, 1, -1) if fits(f, height, width)), None)
    area = height * width
    side = next((s for s in range(2048, 63, -64) if s * s < area and fits(params.segment_frames, s, s)), None)
    fixes = []
    if frames is not None:
        fixes.append(f"params.segment_frames to {frames} or fewer")
    if side is not None:
        fixes.append(f"params.height x params.width to {side * side} pixels ({side}x{side}) or fewer")
    fix = " or ".join(fixes) if fixes else "params.height, params.width and params.segment_frames"
    return (f"a {height}x{width} segment of {params.segment_frames} frames does not fit the GPU memory of any "
            f"configured worker class (largest: {largest}, {WORKER_CLASSES[largest].memory_gib:g} GiB): "
            f"lower {fix}")
