"""Replays the reference fixtures of the original implementation against this package.

Each fixture file is routed to a checker by its kind; a checker returns one `CheckResult`.
Checkers are registered by module path so that importing the runner stays cheap.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckResult:
    path: str
    kind: str
    worst_error: float
    passed: bool
    detail: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        extra = f"  {self.detail}" if self.detail else ""
        return f"{verdict}  {self.kind:<12} worst_err={self.worst_error:.3g}  {self.path}{extra}"


# kind -> "module:function"; every function takes (path: Path, data) and returns CheckResult.
CHECKERS: dict[str, str] = {
    "unet": "model.conformance.unet:check_unet_fixture",
    "unet_layout": "model.conformance.layout:check_unet_layout",
    "unet_summary": "model.conformance.layout:check_unet_summary",
    "vae": "model.conformance.vae:check_vae_fixture",
    "vae_layout": "model.conformance.vae:check_vae_layout",
    "schedule": "model.conformance.sampler:check_schedule",
    "ddim": "model.conformance.sampler:check_ddim",
    "ddim_long": "model.conformance.sampler:check_ddim_long",
    "pose_draw": "model.conformance.pose:check_draw_case",
    "pose_align": "model.conformance.pose:check_align_case",
    # returns one result per condition set (pass) of the file
    "pipeline": "model.conformance.pipeline:check_pipeline_fixture",
}


def load_fixture(path: Path) -> tuple[str, object]:
    """Reads a fixture file and names its kind."""
    if path.suffix == ".pt":
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)
        return str(data["kind"]), data
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return _json_kind(data), data
    raise ValueError(f"{path}: not a fixture (expected .pt or .json)")


def _json_kind(data: dict) -> str:
    if "renderings" in data:
        return "pose_draw"
    if "aligned" in data:
        return "pose_align"
    if "checkpoint_prefix" in data:
        return "vae_layout"
    if "per_block" in data:
        return "unet_summary"
    first = next(iter(data.values()), None)
    if isinstance(first, dict) and "shape" in first:
        return "unet_layout"
    raise ValueError("unrecognised JSON fixture layout")


def check_file(path: Path) -> CheckResult:
    """The verdict on one file; a file checked per condition set passes only if every set passes."""
    results = check_file_results(path)
    if len(results) == 1:
        return results[0]
    failed = [r for r in results if not r.passed]
    detail = "; ".join(f"{r.path}: {r.detail}" for r in failed) or f"{len(results)} condition sets"
    return CheckResult(str(path), results[0].kind, max(r.worst_error for r in results), not failed, detail)


def check_file_results(path: Path, conditions: list[str] | None = None) -> list[CheckResult]:
    """One result per file, or per condition set for kind `pipeline` (only the sets in `conditions`
    when given; other kinds ignore it)."""
    try:
        kind, data = load_fixture(path)
    except Exception as exc:  # noqa: BLE001 -- a broken file is a failed check, not a crash of the runner
        return [CheckResult(str(path), "?", float("inf"), False, f"could not read: {exc}")]
    target = CHECKERS.get(kind)
    if target is None:
        return [CheckResult(str(path), kind, float("inf"), False, "no checker for this kind")]
    module_name, func_name = target.split(":")
    try:
        checker = getattr(importlib.import_module(module_name), func_name)
        result = checker(path, data, conditions) if kind == "pipeline" else checker(path, data)
        return result if isinstance(result, list) else [result]
    except Exception as exc:  # noqa: BLE001 -- a crashing checker is reported as that file's failure
        return [CheckResult(str(path), kind, float("inf"), False, f"{type(exc).__name__}: {exc}")]
