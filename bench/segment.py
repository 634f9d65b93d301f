"""Seconds and peak memory of one rendered segment: reference preparation, guided DDIM, VAE decode.

    python bench/segment.py --device cuda --dtype fp16 --save        # released sizes, 32 frames 768x512, 30 steps
    python bench/segment.py --tiny --device cpu --steps 2 --save      # quick check without a GPU
    python bench/segment.py --batch-guidance --compile reduce-overhead # compiled, CUDA graphs

The weights are random (the published files are not needed): speed and memory depend on the
architecture, not on the values. On CUDA the peak is torch.cuda.max_memory_allocated over the timed
segment; on CPU it is the process's peak resident set. --save writes JSON and markdown to
bench/results/ named after the device. With --compile an untimed first segment compiles (and with
CUDA graphs records) the model; the timed one reuses it. MFU counts the UNet's FLOPs (bench/flops.py)
against the device's dense half-precision peak.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flops import peak_flops, unet_forward_flops
from bench.measure import (
    device_name,
    peak_memory_kind,
    peak_memory_mib,
    reset_peak_memory,
    save,
    synchronize,
)
from model.architecture import Architecture
from model.compile import COMPILE_MODES
from model.pipeline import DTYPES, UniAnimatePipeline

TITLE = "One segment: reference, guided DDIM, VAE decode"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny architecture instead of the released one")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="UNet dtype (default fp16 on cuda, else fp32)")
    parser.add_argument("--frames", type=int, default=32, help="frames in the segment")
    parser.add_argument("--height", type=int, help="pixels (default 768, tiny 64)")
    parser.add_argument("--width", type=int, help="pixels (default 512, tiny 64)")
    parser.add_argument("--steps", type=int, default=30, help="DDIM steps (30 visits 31 timesteps)")
    parser.add_argument("--cpu-offload", action="store_true", help="park CLIP and the VAE on the CPU while sampling")
    parser.add_argument("--batch-guidance", action="store_true", help="both guidance halves in one UNet call")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="off", help="torch.compile mode (model/compile.py)")
    parser.add_argument("--save", action="store_true", help="write JSON and markdown to bench/results/")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    args.height = args.height or (64 if args.tiny else 768)
    args.width = args.width or (64 if args.tiny else 512)
    return args


def inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    ref_pose = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    poses = rng.integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    return image, ref_pose, poses, image


def run(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    arch = Architecture.tiny() if args.tiny else Architecture.released()
    built = time.perf_counter()
    pipeline = UniAnimatePipeline.random(arch, device=device, dtype=dtype, cpu_offload=args.cpu_offload,
                                         label="untrained random weights (benchmark)")
    pipeline.batch_guidance = args.batch_guidance
    pipeline.compile(args.compile)
    build_s = time.perf_counter() - built
    image, ref_pose, poses, first_frame = inputs(args)
    warmup_s = 0.0
    if args.compile != "off":  # compile (and record graphs) outside the timed segment
        warmup_s = time_segment(pipeline, args, device, image, ref_pose, poses, first_frame, [])[1]
    steps_seen: list[int] = []
    frames, seconds = time_segment(pipeline, args, device, image, ref_pose, poses, first_frame, steps_seen)
    visited = steps_seen[-1] if steps_seen else 0
    calls = (1 if args.batch_guidance else 2) * visited
    forward_flops = unet_forward_flops(arch.unet, args.frames, args.height, args.width)
    segment_flops = 2 * visited * forward_flops  # two rows per step, batched or not
    peak = peak_flops(device_name(device))
    return {
        "model": "tiny" if args.tiny else "released",
        "unet_parameters": sum(p.numel() for p in pipeline.unet.parameters()),
        "device": device_name(device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "frames": len(frames),
        "pixels": [args.height, args.width],
        "steps": args.steps,
        "visited_timesteps": visited,
        "unet_calls": calls,
        "cpu_offload": args.cpu_offload,
        "batch_guidance": args.batch_guidance,
        "compile": args.compile,
        "build_seconds": round(build_s, 2),
        "compile_warmup_seconds": round(warmup_s, 2),
        "seconds_per_segment": round(seconds, 3),
        "seconds_per_frame": round(seconds / len(frames), 4),
        "unet_tflop_per_row_forward": round(forward_flops / 1e12, 4),
        "segment_pflop": round(segment_flops / 1e15, 4),
        "mfu": round(segment_flops / seconds / peak, 4) if peak else None,
        "peak_memory_mib": round(peak_memory_mib(device)),
        "peak_memory_kind": peak_memory_kind(device),
        "frames_varied": bool(frames.std() > 0),
        "_frames": frames,  # for callers comparing precisions; not saved
    }


def time_segment(pipeline, args, device, image, ref_pose, poses, first_frame, steps_seen: list[int]):
    """Reference + one segment, timed between device synchronisations; returns (frames, seconds)."""
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    ref = pipeline.prepare_reference(image, ref_pose, args.height, args.width)
    frames = pipeline.render_segment(ref, poses, first_frame, seed=0, steps=args.steps, guidance_scale=2.5,
                                     noise_prior_t=939, progress=lambda done, total: steps_seen.append(total))
    synchronize(device)
    return frames, time.perf_counter() - start


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = run(args)
    result.pop("_frames")
    print(f"{result['model']} pipeline on {result['device']}, {args.dtype}: {result['frames']} frames "
          f"{args.height}x{args.width}, {args.steps} steps ({result['unet_calls']} UNet calls)")
    print(f"seconds per segment: {result['seconds_per_segment']} ({result['seconds_per_frame']} per frame)")
    print(f"peak memory: {result['peak_memory_mib']} MiB ({result['peak_memory_kind']})")
    if args.save:
        stem = save(result, f"segment_{result['model']}_{result['dtype']}", TITLE)
        print(f"saved {stem}.json/.md")
    return 0 if result["frames_varied"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
