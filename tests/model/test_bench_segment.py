"""bench/segment.py stays runnable: the tiny model through the same code the GPU numbers come from."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.measure import markdown
from model.schedule import ddim_timesteps

BENCH = Path(__file__).resolve().parents[2] / "bench" / "segment.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_segment", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("batch_guidance", [False, True])
def test_tiny_segment_is_measured(bench, batch_guidance):
    argv = ["--tiny", "--device", "cpu", "--frames", "3", "--steps", "2"] + (["--batch-guidance"] * batch_guidance)
    result = bench.run(bench.parse_args(argv))
    assert result["frames"] == 3 and result["pixels"] == [64, 64] and result["dtype"] == "fp32"
    visited = len(ddim_timesteps(2))
    assert result["visited_timesteps"] == visited
    assert result["unet_calls"] == (1 if batch_guidance else 2) * visited
    assert result["seconds_per_segment"] > 0 and result["peak_memory_mib"] > 0
    assert result["frames_varied"]
    assert "| seconds_per_segment |" in markdown(bench.TITLE, result)
