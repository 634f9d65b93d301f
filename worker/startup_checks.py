"""Checks a render worker runs before it starts Celery, so that a worker that cannot render
exits at once with a message instead of reporting "ready" and failing every job it takes.

- the checkpoint folder holds every file the model needs (`model.checkpoints.ModelFiles.discover`);
- UNIANIMATE_DEVICE names a device this machine has.

The CUDA probe runs in a throwaway interpreter: asking the driver in the main process before
Celery forks its pool can leave CUDA unusable in the forked children.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from worker.settings import WorkerSettings

PROBE_TIMEOUT_S = 120.0
_PROBE = ("import json, torch; print(json.dumps({'built': torch.backends.cuda.is_built(), "
          "'count': torch.cuda.device_count(), 'torch': torch.__version__}))")


class StartupRefused(RuntimeError):
    """The worker cannot render with these settings; the message says what to change."""


@dataclass(frozen=True)
class CudaInfo:
    built: bool  # this PyTorch was built with CUDA
    count: int  # GPUs it can see
    torch: str


def check_render_worker(settings: WorkerSettings, probe: Callable[[], CudaInfo] | None = None) -> None:
    """Raise StartupRefused unless this render worker can load its model on its device."""
    check_model_files(settings)
    check_device(settings.device, probe or probe_cuda)


def check_model_files(settings: WorkerSettings) -> None:
    if settings.model == "tiny":
        return
    from model.checkpoints import CheckpointError, ModelFiles  # imports torch: only render workers get here

    try:
        ModelFiles.discover(settings.checkpoint_dir)
    except CheckpointError as exc:
        raise StartupRefused(f"UNIANIMATE_CHECKPOINT_DIR: {exc}") from exc


def check_device(device: str | None, probe: Callable[[], CudaInfo]) -> None:
    """None (cuda when present, else cpu) and cpu always work; cuda and cuda:N need that GPU."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device or "")
    if device in (None, "cpu") or match is None:  # the settings refuse any other name
        return
    info = probe()
    if not info.built:
        raise StartupRefused(f"UNIANIMATE_DEVICE={device}, but this PyTorch ({info.torch}) was built without CUDA: "
                             "install a CUDA build of torch, or set UNIANIMATE_DEVICE=cpu")
    if info.count == 0:
        raise StartupRefused(f"UNIANIMATE_DEVICE={device}, but no CUDA GPU is visible (check the NVIDIA driver, "
                             "CUDA_VISIBLE_DEVICES and the container's GPU reservation), or set "
                             "UNIANIMATE_DEVICE=cpu")
    index = int(match.group(1) or 0)
    if index >= info.count:
        raise StartupRefused(f"UNIANIMATE_DEVICE={device}, but only {info.count} GPU(s) are visible "
                             f"(cuda:0..cuda:{info.count - 1})")


def probe_cuda() -> CudaInfo:
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StartupRefused(f"asking PyTorch for the GPUs took longer than {PROBE_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        raise StartupRefused(f"could not ask PyTorch for the GPUs: {done.stderr.strip()[-500:]}")
    try:
        return CudaInfo(**json.loads(done.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError) as exc:  # no output, or not the probe's JSON
        raise StartupRefused(f"could not read PyTorch's answer about the GPUs: {done.stdout.strip()[-500:]!r}") from exc
