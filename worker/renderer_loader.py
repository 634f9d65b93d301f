"""Which model a worker process renders with, on which device (one GPU per worker process)."""
from __future__ import annotations

import logging

from model.longvideo.protocol import SegmentRenderer
from model.memory_plan import GIB
from worker.memory_fit import MemoryFit
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def pick_device(configured: str | None, process_index: int, cuda_count: int) -> str:
    """`configured`, or cuda when there is a GPU; with several GPUs and a bare "cuda", worker
    process i takes GPU i mod count, so `--concurrency N` on N GPUs uses each GPU once."""
    device = configured or ("cuda" if cuda_count > 0 else "cpu")
    if device == "cuda" and cuda_count > 0:
        # always an explicit index: the process binds to it (set_device), and every memory query and
        # empty_cache then targets that GPU rather than whichever is current
        return f"cuda:{process_index % cuda_count}"
    return device


def bind_device(device: str) -> None:
    """Make `device` this process's current CUDA device, so kernels, caches and memory statistics
    that take no device argument (mamba-ssm, empty_cache, max_memory_allocated) use its GPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))


def load_renderer(settings: WorkerSettings, process_index: int = 0) -> SegmentRenderer:
    """The UniAnimate pipeline the settings name, loaded once per worker process."""
    import torch

    from model.pipeline import DTYPES, UniAnimatePipeline

    settings.require_model()
    device = pick_device(settings.device, process_index, torch.cuda.device_count())
    bind_device(device)
    dtype_name = settings.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = DTYPES[dtype_name]
    if settings.model == "tiny":
        renderer = UniAnimatePipeline.tiny(seed=settings.tiny_seed, device=device, dtype=dtype,
                                           cpu_offload=settings.cpu_offload)
    else:
        renderer = UniAnimatePipeline.from_checkpoint_dir(settings.checkpoint_dir, device=device, dtype=dtype,
                                                          cache_dir=settings.cache_dir,
                                                          cpu_offload=settings.cpu_offload)
    if settings.batch_guidance != "auto":
        renderer.batch_guidance = settings.batch_guidance == "on"
    renderer.compile(settings.compile)
    log.info("loaded %s on %s (%s)%s", renderer.label, device, dtype_name,
             ": UNTRAINED, the videos will not look like the person" if renderer.untrained else "")
    return renderer


def memory_fit(settings: WorkerSettings, renderer: SegmentRenderer) -> MemoryFit:
    """The memory budget of a render process: its GPU's memory (or the setting), none on a CPU."""
    device = getattr(renderer, "device", None)
    budget = None
    if device is not None and str(device).startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        budget = int(settings.gpu_memory_budget_gb * GIB) if settings.gpu_memory_budget_gb else total
    dtype = settings.dtype or ("fp16" if budget is not None else "fp32")
    return MemoryFit(budget, dtype, prefer_batch_guidance=settings.batch_guidance != "off")


def load_extractor(settings: WorkerSettings):
    """DWPose for photos and raw videos when UNIANIMATE_DWPOSE_DIR is set; else None."""
    if settings.dwpose_dir is None:
        return None
    from model.pose.extract import DWPoseExtractor

    device = "cuda" if (settings.device or "").startswith("cuda") else "auto"
    return DWPoseExtractor(settings.dwpose_dir, device=device)
