"""Peak memory and time of one UNet forward, temporal transformer vs temporal Mamba, by frame count.

    python -m bench.temporal_memory                       # tiny config on CPU
    python -m bench.temporal_memory --device cuda         # released (full-size) config, float16
    python -m bench.temporal_memory --frames 32 64 --height 768 --width 512 --size full --device cuda
    python -m bench.temporal_memory --threads 1 --size full --block-only --height 128 --width 128 \
        --out bench/results/temporal_memory_cpu_block.md   # one full-width block on CPU

Each (temporal kind, frame count) runs in a fresh process, so one measurement's allocations and
allocator caches cannot hide in the next one's numbers. One forward is the conditional call of a
denoising step: random weights, every condition given, batch 1. Peak memory is, on CUDA, the
allocator's peak (`max_memory_allocated`, weights included); on CPU, the process's peak resident
set (VmHWM, reset just before the forward; Linux only). "Forward peak" is that peak minus what was
in use just before the call, i.e. what the forward itself needed. The table is written to
bench/results/temporal_memory_<device>.md.

If the UNet cannot be imported the script says so and measures the temporal block alone, at the
width and spatial size of the UNet's first level.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KINDS = ("transformer", "mamba")
GB = 1024**3


@dataclasses.dataclass(frozen=True)
class Settings:
    device: str
    size: str  # "tiny" or "full"
    height: int  # output pixels; the latent is 1/8
    width: int
    dtype: torch.dtype
    block_only: bool
    threads: int | None  # CPU threads; None keeps PyTorch's default


@dataclasses.dataclass(frozen=True)
class Measurement:
    kind: str
    frames: int
    peak_bytes: int | None  # None: out of memory
    forward_peak_bytes: int | None
    seconds: float | None
    note: str = ""


# ---- building what is measured -----------------------------------------------------------------


def unet_available() -> bool:
    try:
        from model.unet import UNetConfig, UniAnimateUNet  # noqa: F401
    except ImportError:
        return False
    return True


def unet_config(settings: Settings, kind: str):
    from model.unet import UNetConfig

    base = UNetConfig.tiny() if settings.size == "tiny" else UNetConfig.released()
    return dataclasses.replace(base, temporal=kind)


def build_unet(settings: Settings, kind: str) -> Callable[[int], Callable[[], torch.Tensor]]:
    """Builds the UNet once; returns `prepare(frames)`, which makes random inputs for one
    conditional forward and returns the call."""
    from model.unet import UniAnimateUNet

    config = unet_config(settings, kind)
    model = UniAnimateUNet(config).to(settings.device, settings.dtype).eval()
    model.set_zero_y(torch.randn(1, 77, config.context_dim))
    device, dtype, h, w = settings.device, settings.dtype, settings.height, settings.width

    def prepare(frames: int) -> Callable[[], torch.Tensor]:
        x = torch.randn(1, 4, frames, h // 8, w // 8, device=device, dtype=dtype)
        conditions = {
            "image": torch.randn(1, 1, config.context_dim, device=device, dtype=dtype),
            "local_image": torch.rand(1, 3, frames, h, w, device=device, dtype=dtype),
            "dwpose": torch.rand(1, 3, frames + 1, h, w, device=device, dtype=dtype),
            "randomref": torch.randn(1, 4, 1, h // 8, w // 8, device=device, dtype=dtype),
        }
        t = torch.tensor([939], device=device)
        return lambda: model(x, t, **conditions)

    return prepare


def build_block(settings: Settings, kind: str) -> Callable[[int], Callable[[], torch.Tensor]]:
    """One temporal block at the first UNet level (width `dim`, the latent size), on frames + 1."""
    channels = 32 if settings.size == "tiny" else 320
    if kind == "mamba":
        from model.unet.temporal_mamba import TemporalMamba

        block = TemporalMamba(channels)
    else:
        from model.unet.temporal import make_temporal_block  # arrives with the UNet

        config = unet_config(settings, kind)
        block = make_temporal_block(config, channels, channels // config.head_dim, config.head_dim)
    block = block.to(settings.device, settings.dtype).eval()

    def prepare(frames: int) -> Callable[[], torch.Tensor]:
        shape = (1, channels, frames + 1, settings.height // 8, settings.width // 8)
        x = torch.randn(shape, device=settings.device, dtype=settings.dtype)
        return lambda: block(x)

    return prepare


# ---- measuring (runs in a fresh process) --------------------------------------------------------


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> int:
    """Start a new peak window; returns the memory in use now."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    return _proc_status_bytes("VmRSS")


def _peak(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else _proc_status_bytes("VmHWM")


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(settings: Settings, kind: str, frames: int) -> Measurement:
    torch.manual_seed(0)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    build = build_block if settings.block_only else build_unet
    note = ""
    if settings.device == "cuda" and kind == "mamba":
        from model.unet.selective_scan import mamba_kernels_available

        if not mamba_kernels_available():
            note = "PyTorch scan (mamba-ssm / causal-conv1d kernels unusable here; the log says why)"
    try:
        with torch.no_grad():
            prepare = build(settings, kind)
            prepare(2)()  # warm-up: kernel selection, lazy initialisation
            run = prepare(frames)
            _synchronize(settings.device)
            before = _reset_peak(settings.device)
            start = time.perf_counter()
            run()
            _synchronize(settings.device)
            seconds = time.perf_counter() - start
        peak = _peak(settings.device)
    except torch.cuda.OutOfMemoryError:
        return Measurement(kind, frames, None, None, None, "out of memory")
    return Measurement(kind, frames, peak, peak - before, seconds, note)


# ---- reporting ----------------------------------------------------------------------------------


def _gb(value: int | None) -> str:
    return "OOM" if value is None else f"{value / GB:.2f}"


def _seconds(value: float | None) -> str:
    return "OOM" if value is None else f"{value:.2f}"


def write_table(settings: Settings, frame_counts: list[int], results: list[Measurement], path: Path) -> str:
    by_key = {(m.kind, m.frames): m for m in results}
    if settings.device == "cuda":
        device_name = torch.cuda.get_device_name()
        memory_kind = "peak allocated by PyTorch (`max_memory_allocated`, weights included)"
    else:
        device_name = platform.processor() or platform.machine()
        memory_kind = "peak resident set of the process (VmHWM, weights and the Python runtime included)"
    what = "one temporal block (first UNet level)" if settings.block_only else "one conditional UNet forward"
    dtype = str(settings.dtype).removeprefix("torch.")
    latent = f"{settings.height // 8}x{settings.width // 8}"
    lines = [
        f"# Temporal module memory: {what}",
        "",
        f"- date: {datetime.date.today().isoformat()}; device: {settings.device} ({device_name}); torch {torch.__version__}",
        f"- config: {settings.size}; output {settings.height}x{settings.width} px (latent {latent}); dtype {dtype}; "
        + "batch 1; random weights; the UNet runs on frames + 1 (the reference slot)",
        f"- CPU threads: {settings.threads or torch.get_num_threads()}",
        f"- memory: {memory_kind}; forward peak = peak minus memory in use before the call; "
        + "time: one forward, after a warm-up call",
        "",
        "| frames | transformer peak GB | transformer forward peak GB | transformer s | mamba peak GB "
        + "| mamba forward peak GB | mamba s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for frames in frame_counts:
        cells = [str(frames)]
        for kind in KINDS:
            m = by_key.get((kind, frames))
            if m is None:
                cells += ["n/a"] * 3
            else:
                cells += [_gb(m.peak_bytes), _gb(m.forward_peak_bytes), _seconds(m.seconds)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = sorted({f"{m.kind}: {m.note}" for m in results if m.note})
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


# ---- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[Settings, list[int], Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--size", choices=["tiny", "full"], help="default: tiny on cpu, full on cuda")
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--height", type=int, help="output pixels (default: 64 tiny, 768 full)")
    parser.add_argument("--width", type=int, help="output pixels (default: 64 tiny, 512 full)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default: float16 on cuda")
    parser.add_argument("--threads", type=int, help="CPU threads (on a busy machine, 1 gives steadier times)")
    parser.add_argument("--block-only", action="store_true", help="measure one temporal block, not the UNet")
    parser.add_argument("--out", type=Path, help="default: bench/results/temporal_memory_<device>.md")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    if args.device == "cpu" and not Path("/proc/self/clear_refs").exists():
        parser.error("CPU peak memory is read from Linux /proc; on other systems use --device cuda")
    size = args.size or ("tiny" if args.device == "cpu" else "full")
    height = args.height or (64 if size == "tiny" else 768)
    width = args.width or (64 if size == "tiny" else 512)
    if height % 16 or width % 16:
        parser.error(f"--height and --width must be multiples of 16 (got {height}x{width})")
    dtype = getattr(torch, args.dtype or ("float16" if args.device == "cuda" else "float32"))
    block_only = args.block_only
    if not block_only and not unet_available():
        print("The UNet (model.unet.UniAnimateUNet) is not available: measuring the temporal block only.")
        block_only = True
    settings = Settings(args.device, size, height, width, dtype, block_only, args.threads)
    out = args.out or RESULTS_DIR / f"temporal_memory_{args.device}.md"
    return settings, args.frames, out


def main(argv: list[str] | None = None) -> None:
    settings, frame_counts, out = parse_args(argv)
    results = []
    for frames in frame_counts:
        for kind in KINDS:
            # A fresh process per measurement; spawn, because CUDA cannot be re-initialised in a fork.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                try:
                    m = pool.submit(measure, settings, kind, frames).result()
                except ImportError as error:
                    print(f"{kind}: not measured ({error})")
                    continue
            results.append(m)
            print(f"{kind:>11} {frames:4d} frames: peak {_gb(m.peak_bytes)} GB, "
                  f"forward peak {_gb(m.forward_peak_bytes)} GB, {_seconds(m.seconds)} s {m.note}")
    print(write_table(settings, frame_counts, results, out))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
