"""The GPU check's benchmark half: one segment per variant, MFU, peak memory against the planner,
and fp16-vs-fp32 PSNR of the decoded frames; writes bench/results/gpu_<device>.md.

    python bench/gpu_check.py --pytest-log LOG          # what bench/gpu_check.sh runs on a GPU
    python bench/gpu_check.py --dry-run --out FILE      # tiny model on the CPU: the same code, seconds

Variants at 768x512, 32 frames, 30 steps, released sizes with random weights: eager with two UNet
calls per step, batched guidance, and batched guidance compiled with CUDA graphs.
"""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import segment
from bench.measure import RESULTS_DIR, device_name
from model import memory_plan

VARIANTS = (("eager, two calls", [], "off"), ("batched guidance", ["--batch-guidance"], "off"),
            ("batched, compiled (reduce-overhead)", ["--batch-guidance"], "reduce-overhead"))


def segment_args(dry_run: bool, dtype: str, steps: int | None = None) -> list[str]:
    if dry_run:
        return ["--tiny", "--device", "cpu", "--dtype", dtype, "--frames", "2", "--steps", str(steps or 1)]
    return ["--device", "cuda", "--dtype", dtype, "--frames", "32", "--height", "768", "--width", "512",
            "--steps", str(steps or 30)]


def run_variant(argv: list[str]) -> dict:
    result = segment.run(segment.parse_args(argv))
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def predicted_mib(result: dict, dry_run: bool) -> int:
    if dry_run:  # the planner describes the released model; the tiny one only exercises the call
        return 0
    peak = memory_plan.estimate_peak_bytes(768, 512, 32, dtype=result["dtype"], batch_guidance=result["batch_guidance"],
                                           decode_chunk=2)
    return round(peak / 2**20)


def report(args: argparse.Namespace) -> str:
    half = "fp32" if args.dry_run else "fp16"
    rows = []
    for name, flags, mode in VARIANTS:
        if args.dry_run and mode != "off":
            continue  # compiling on two CPU cores takes minutes; tests/model/test_compile.py covers it
        result = run_variant(segment_args(args.dry_run, half) + flags + ["--compile", mode])
        rows.append(f"| {name} | {result['seconds_per_segment']} | {result['mfu']} | {result['peak_memory_mib']} "
                    f"| {predicted_mib(result, args.dry_run)} | {result['compile_warmup_seconds']} |")
    device = rows and result["device"]
    # PSNR on fewer steps: an fp32 segment of the released model is slow, and the gap shows early
    low = run_variant(segment_args(args.dry_run, half, args.psnr_steps) + ["--batch-guidance"])
    full = run_variant(segment_args(args.dry_run, "fp32", args.psnr_steps) + ["--batch-guidance"])
    lines = [
        f"# GPU check: {device}", "",
        (f"torch {torch.__version__}; {result['model']} sizes, random weights; {result['frames']} frames "
        f"{result['pixels'][0]}x{result['pixels'][1]}, {result['steps']} steps; {result['segment_pflop']} PFLOP "
        f"per segment ({result['unet_tflop_per_row_forward']} TFLOP per UNet row-forward)."), "",
        f"## Segment ({half})", "",
        "| variant | seconds | MFU | peak MiB (measured) | peak MiB (planner) | compile warm-up s |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        f"## Precision: {half} vs fp32, {args.psnr_steps} steps, decoded frames", "",
        f"PSNR {psnr(low['_frames'], full['_frames']):.2f} dB", "",
        "## pytest tests/gpu", "", "```", args.pytest_log.read_text()[-3000:] if args.pytest_log else "(not run)", "```",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, no compile")
    parser.add_argument("--psnr-steps", type=int, default=10)
    parser.add_argument("--pytest-log", type=Path, help="output of pytest tests/gpu, appended to the report")
    parser.add_argument("--out", type=Path, help="default: bench/results/gpu_<device>.md")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.psnr_steps = 1
    text = report(args)
    device = device_name(torch.device("cpu" if args.dry_run else "cuda"))
    out = args.out or RESULTS_DIR / f"gpu_{segment_slug(device)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


def segment_slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
