"""`python -m model.conformance` over every shared reference file: what `make conformance` runs."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def shared_files(reference) -> list:
    files = sorted((reference / "fixtures").glob("*.pt"))
    files += sorted(reference.glob("*_state_dict.json")) + sorted(reference.glob("*_summary.json"))
    files += sorted((reference / "pose").glob("*.json"))
    return files


def run_conformance(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.conformance", *map(str, paths)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def test_every_shared_fixture_passes(reference):
    files = shared_files(reference)
    kinds = {"schedule.pt", "ddim_toy.pt", "ddim_long_toy.pt", "unet_tiny.pt", "vae_tiny.pt", "pipeline_tiny.pt",
             "unianimate_unet_state_dict.json", "sd21_vae_state_dict.json", "unianimate_unet_summary.json"}
    assert kinds <= {f.name for f in files}, "the shared reference set changed: update this test"
    result = run_conformance(*files)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert result.returncode == 0, result.stdout + result.stderr
    # a pipeline file gives one line per condition set: pipeline_tiny.pt has two
    expected = len(files) + sum(1 for f in files if f.name.startswith("pipeline_"))
    assert len(lines) == expected and all(line.startswith("PASS") for line in lines)
    assert sum("pipeline_tiny.pt [image,local_image,dwpose]" in line for line in lines) == 1
    assert sum("pipeline_tiny.pt [image,randomref,dwpose]" in line for line in lines) == 1
    assert f"{expected} passed, 0 failed" in result.stdout


def test_conditions_flag_replays_one_set(reference):
    result = run_conformance("--conditions", "image,local_image,dwpose", reference / "fixtures" / "pipeline_tiny.pt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[image,local_image,dwpose]" in result.stdout and "randomref,dwpose]" not in result.stdout
    assert run_conformance("--conditions", "nonsense", reference / "fixtures" / "schedule.pt").returncode == 2


def test_a_tampered_fixture_fails_with_exit_1(reference, tmp_path):
    case = json.loads((reference / "pose" / "draw_case_1.json").read_text())
    body = case["bodies"]["candidate"]
    body[1] = [body[1][0] + 0.05, body[1][1]]  # move the neck: the drawing no longer matches the PNGs
    tampered = tmp_path / "draw_case_1.json"
    tampered.write_text(json.dumps(case))
    for png in (reference / "pose").glob("draw_case_1*.png"):
        (tmp_path / png.name).write_bytes(png.read_bytes())
    result = run_conformance(reference / "fixtures" / "schedule.pt", tampered)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("PASS") and result.stdout.splitlines()[1].startswith("FAIL")
    assert "1 passed, 1 failed" in result.stdout


def test_no_arguments_is_a_usage_error():
    result = run_conformance()
    assert result.returncode == 2 and "usage" in result.stderr
