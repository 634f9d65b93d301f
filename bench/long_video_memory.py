"""Peak memory of long renders: does a 60 s video need more memory than a 10 s one?

Renders the same synthetic keypoint motion for 10 s and 60 s (15 fps) with `unianimate render`
in a fresh subprocess each, and reports each run's peak RSS (and peak GPU memory on CUDA), the
ratio, and the frame count and duration of the MP4. Results go to bench/results/long_video_memory.md.

    .venv/bin/python bench/long_video_memory.py --device cpu --height 64 --width 64 --steps 2

Without --checkpoint-dir it renders with the tiny untrained model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script from anywhere: the repository root must be importable.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image

from model.longvideo.mp4 import probe_video
from model.pose.keypoints import DRAW_HEIGHT, DRAW_WIDTH

RESULTS = REPO_ROOT / "bench" / "results" / "long_video_memory.md"
MAX_RATIO = 1.3
GPU_PEAK_PREFIX = "peak_gpu_bytes="


@dataclass(frozen=True)
class Run:
    seconds: float
    rc: int
    peak_rss_bytes: int
    peak_gpu_bytes: int | None
    wall_s: float
    frames: int
    duration_s: float


# Linux carries the high-water mark of the address space a process replaces across exec, and a
# child starts in a copy of (or, with vfork, in) its parent's, so a child's `ru_maxrss` is at least
# its parent's resident size: a test runner that has loaded a model would hide the child's own
# peak. This bare interpreter (no site, ~10 MB) starts the command instead and writes the
# kernel's peak for it (KiB) to the file named by its first argument.
_LAUNCHER = """
import os, sys
peak_file, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(peak_file, "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def measure_peak_rss(cmd: list[str], log_dir: Path) -> tuple[int, int, str]:
    """Runs `cmd` in a fresh process; returns (exit code, its peak RSS in bytes, its stdout).

    The peak comes from the kernel's accounting of that one process (`wait4` in a minimal
    launcher, see `_LAUNCHER`), so neither the caller's memory nor earlier runs leak into it.
    """
    stdout, stderr, peak = log_dir / "stdout.txt", log_dir / "stderr.txt", log_dir / "peak_rss_kib.txt"
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(peak), *cmd]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        rc = subprocess.run(
            launcher,
            check=False,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        ).returncode
    if rc != 0:
        sys.stderr.write(stderr.read_text()[-4000:])
    return rc, int(peak.read_text()) * 1024, stdout.read_text()  # ru_maxrss is in KiB on Linux


def synthetic_keypoints(frames: int, fps: float) -> dict:
    """A person swaying and waving, as OpenPose JSON with normalised coordinates."""
    standing = [
        (0.50, 0.15),
        (0.50, 0.25),
        (0.40, 0.25),
        (0.36, 0.38),
        (0.34, 0.50),
        (0.60, 0.25),
        (0.64, 0.38),
        (0.66, 0.50),
        (0.44, 0.52),
        (0.44, 0.70),
        (0.44, 0.88),
        (0.56, 0.52),
        (0.56, 0.70),
        (0.56, 0.88),
        (0.48, 0.13),
        (0.52, 0.13),
        (0.46, 0.14),
        (0.54, 0.14),
    ]
    out = []
    for i in range(frames):
        phase = 2 * math.pi * i / (2 * fps)  # one sway every two seconds
        points = []
        for k, (x, y) in enumerate(standing):
            dx = 0.03 * math.sin(phase)
            dy = -0.12 * (1 + math.sin(2 * phase)) / 2 if k in (4, 7) else 0.0  # wrists wave
            points += [round(x + dx, 5), round(y + dy, 5), 0.9]
        out.append({"people": [{"pose_keypoints_2d": points}]})
    return {"fps": fps, "canvas_width": 512, "canvas_height": 768, "frames": out}


def write_inputs(folder: Path, seconds: float, fps: float) -> None:
    Image.new("RGB", (512, 768), (120, 110, 100)).save(folder / "reference.png")
    motion = synthetic_keypoints(round(seconds * fps), fps)
    (folder / "poses.json").write_text(json.dumps(motion))
    reference = {**motion, "frames": motion["frames"][:1]}
    (folder / "reference.json").write_text(json.dumps(reference))


def render_command(folder: Path, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--",
        "--reference",
        str(folder / "reference.png"),
        "--reference-keypoints",
        str(folder / "reference.json"),
        "--pose-keypoints",
        str(folder / "poses.json"),
        "--out",
        str(folder / "out.mp4"),
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--steps",
        str(args.steps),
        "--segment-frames",
        str(args.segment_frames),
        "--quiet",
    ]
    cmd += ["--checkpoint-dir", str(args.checkpoint_dir)] if args.checkpoint_dir else ["--model", "tiny"]
    return cmd + (["--device", args.device] if args.device else [])


def run_one(seconds: float, args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory(prefix="unianimate-bench-") as tmp:
        folder = Path(tmp)
        write_inputs(folder, seconds, args.fps)
        start = time.monotonic()
        rc, peak, stdout = measure_peak_rss(render_command(folder, args), folder)
        wall = time.monotonic() - start
        gpu = [int(line.split("=")[1]) for line in stdout.splitlines() if line.startswith(GPU_PEAK_PREFIX)]
        info = probe_video(folder / "out.mp4") if rc == 0 else None
    return Run(
        seconds,
        rc,
        peak,
        gpu[0] if gpu else None,
        wall,
        info.frames if info else 0,
        info.duration_s if info else 0.0,
    )


def device_name(device: str | None) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"CPU: {cpu} ({os.cpu_count()} cores)"


def report(runs: list[Run], args: argparse.Namespace) -> str:
    ratio = runs[-1].peak_rss_bytes / runs[0].peak_rss_bytes
    model = (
        f"checkpoints in {args.checkpoint_dir}" if args.checkpoint_dir else "tiny (untrained, random weights)"
    )
    lines = [
        "# Long-video memory",
        "",
        (
            f"Device: {args.device_name or device_name(args.device)}. Model: {model}. {args.height}x{args.width}, {args.steps} steps, "
            f"{args.segment_frames}-frame segments, keypoint input at {args.fps:g} fps. "
            f"Command: `python bench/long_video_memory.py {shlex.join(sys.argv[1:])}`"
        ),
        "",
        "| video | exit | frames | MP4 duration (s) | peak RSS (MiB) | peak GPU (MiB) | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        gpu = "-" if run.peak_gpu_bytes is None else f"{run.peak_gpu_bytes / 2**20:.0f}"
        lines.append(
            f"| {run.seconds:g} s | {run.rc} | {run.frames} | {run.duration_s:.3f} | "
            f"{run.peak_rss_bytes / 2**20:.0f} | {gpu} | {run.wall_s:.0f} |"
        )
    verdict = "within" if ratio <= MAX_RATIO else "NOT within"
    summary = f"Peak RSS ratio {runs[-1].seconds:g} s / {runs[0].seconds:g} s: **{ratio:.3f}** ({verdict} {MAX_RATIO}x)."
    frames = runs[-1].frames
    scale = (
        f"For scale: holding all {frames} output frames of the longest run would add "
        f"{frames * args.height * args.width * 3 / 2**20:.0f} MiB; holding all its poses as drawn "
        f"({DRAW_HEIGHT}x{DRAW_WIDTH}, before resizing) {frames * DRAW_HEIGHT * DRAW_WIDTH * 3 / 2**20:.0f} MiB."
    )
    lines += ["", summary, "", scale]
    return "\n".join(lines) + "\n"


def child(render_args: list[str]) -> int:
    """One render, then its peak GPU memory (when it used CUDA) for the parent to read."""
    from cli.render import main as render

    rc = render(render_args)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        print(f"{GPU_PEAK_PREFIX}{torch.cuda.max_memory_allocated()}")
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--child", "--"]:
        return child(argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--segment-frames", type=int, default=32)
    parser.add_argument("--checkpoint-dir", type=Path, help="default: the tiny untrained model")
    parser.add_argument("--device", choices=["cpu", "cuda"])
    parser.add_argument("--device-name", help="how the results name the device (default: detected)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    runs = [run_one(seconds, args) for seconds in args.seconds]
    text = report(runs, args)
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    return 0 if all(r.rc == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
