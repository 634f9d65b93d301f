"""What the GPU benchmarks share: naming the device, timing honestly, peak memory, saving results."""
from __future__ import annotations

import json
import platform
import re
import resource
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so a timer read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def peak_memory_kind(device: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss"


def markdown(title: str, result: dict) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in result.items())
    return f"# {title}\n\n| field | value |\n| --- | --- |\n{rows}\n"


def save(result: dict, name: str, title: str) -> Path:
    """Writes `result` as JSON and markdown to bench/results/{name}_{device}.*; returns the stem."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    stem = RESULTS_DIR / f"{name}_{slug}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(title, result))
    return stem
