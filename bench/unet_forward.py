"""Times UniAnimateUNet forwards with random weights and reports memory and half-precision error.

    python bench/unet_forward.py --device cuda --dtype fp16            # released size, 32 frames 768x512
    python bench/unet_forward.py --tiny --device cpu --iters 2 --save  # quick check on a laptop

The fp32 reference runs first on the same inputs; the model is then converted to --dtype, and the
timed forwards report the max abs error against it. Peak memory is torch.cuda.max_memory_allocated
on CUDA (timed forwards only) and the process's ru_maxrss on CPU. --save writes JSON and markdown to
bench/results/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import (
    device_name,
    peak_memory_kind,
    peak_memory_mib,
    reset_peak_memory,
    save,
    synchronize,
)
from model.config import UNetConfig
from model.pipeline import DTYPES
from model.unet import UniAnimateUNet
from model.unet.examples import example_inputs

TITLE = "UNet forward benchmark"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="UNetConfig.tiny() instead of the released size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--frames", type=int, help="frames per forward (default 32, tiny 4)")
    parser.add_argument("--height", type=int, help="pixels (default 768, tiny 64)")
    parser.add_argument("--width", type=int, help="pixels (default 512, tiny 64)")
    parser.add_argument("--iters", type=int, default=3, help="timed forwards")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards before timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", action="store_true", help="write JSON and markdown to bench/results/")
    args = parser.parse_args(argv)
    defaults = (4, 64, 64) if args.tiny else (32, 768, 512)
    args.frames = args.frames or defaults[0]
    args.height = args.height or defaults[1]
    args.width = args.width or defaults[2]
    return args


@torch.no_grad()
def run(args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = UNetConfig.tiny() if args.tiny else UNetConfig.released()
    torch.manual_seed(args.seed)
    model = UniAnimateUNet(config).eval().to(device)
    generator = torch.Generator().manual_seed(args.seed)
    model.set_zero_y(torch.randn(1, 77, config.context_dim, generator=generator))
    inputs = {k: v.to(device) for k, v in example_inputs(config, args.frames, args.height, args.width,
                                                          generator=generator).items()}

    reference = model(**inputs).float()
    model.to(dtype)
    reset_peak_memory(device)
    for _ in range(args.warmup):
        model(**inputs)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        output = model(**inputs)
    synchronize(device)
    seconds = (time.perf_counter() - start) / args.iters

    error = (output.float() - reference).abs().max().item()
    return {
        "model": "tiny" if args.tiny else "released",
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": device_name(device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "x_shape": list(inputs["x"].shape),
        "pixels": [args.height, args.width],
        "iters": args.iters,
        "seconds_per_forward": seconds,
        "peak_memory_mib": peak_memory_mib(device),
        "peak_memory_kind": peak_memory_kind(device),
        "output_finite": bool(torch.isfinite(output).all()),
        "max_abs_err_vs_fp32": error,
        "max_abs_fp32_output": reference.abs().max().item(),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = run(args)
    print(f"{result['model']} UNet ({result['parameters']:,} params) on {result['device']}, {args.dtype}, "
          f"x {result['x_shape']}")
    print(f"time per forward: {result['seconds_per_forward']:.3f} s over {args.iters} iters")
    print(f"peak memory: {result['peak_memory_mib']:.0f} MiB ({result['peak_memory_kind']})")
    print(f"max abs err vs fp32: {result['max_abs_err_vs_fp32']:.3g} "
          f"(fp32 output max abs {result['max_abs_fp32_output']:.3g}), finite: {result['output_finite']}")
    if args.save:
        stem = save(result, f"unet_forward_{result['model']}_{result['dtype']}", TITLE)
        print(f"saved {stem}.json/.md")
    return 0 if result["output_finite"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
