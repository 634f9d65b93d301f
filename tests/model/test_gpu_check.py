"""bench/gpu_check.sh cannot rot without a GPU: its --dry-run runs the same steps on the tiny model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.sh"


def test_gpu_check_dry_run_writes_its_report(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "| eager, two calls |" in text and "| batched guidance |" in text
    assert "PSNR inf dB" in text  # fp32 against fp32 in the dry run: identical frames
    assert "## pytest tests/gpu" in text
