"""The arrows between the rooms (docs/architecture.md), read from every import statement.

Static: each module's `import` and `from ... import` statements, including those inside functions,
are parsed with `ast`, so a lazy import cannot slip past. The run-time checks that model/ loads no
web package and the API process no torch are tests/model/test_boundaries.py and
tests/service/test_no_torch.py.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("cli", "model", "service", "worker")

# room -> the rooms of ours it may import (a room is a dotted prefix; the longest match decides).
ARROWS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "service": (),  # the package itself; every module of it lives in a room below
    "service.settings": (),
    "service.netguard": (),
    "service.jobs": ("service.jobs", "service.settings"),
    "service.storage": ("service.storage", "service.settings"),
    "service.webhooks": ("service.webhooks", "service.jobs.record", "service.netguard", "service.settings"),
    # the keypoint parsers are numpy-only and shared with the worker, so uploads are checked with them
    "service.inputs": ("service.inputs", "service.netguard", "model.pose.formats", "model.pose.keypoints"),
    "service.api": ("service", "model.pose.formats", "model.pose.keypoints"),
    # the preflight runs the worker's own numpy/cv2/PyAV motion preparation (never torch: see
    # tests/service/test_no_torch.py) to report on the poses and draw the aligned-skeleton preview
    "service.preflight": ("service.preflight", "service.jobs.params", "service.storage", "model.motion",
                          "model.pose", "model.longvideo.planner", "model.memory_plan",
                          "model.frame_size"),
    "worker": ("worker", "model", "service.jobs", "service.storage", "service.webhooks", "service.settings"),
    # `unianimate api` starts the app; `unianimate worker` is dispatched by name (cli/main.py);
    # `unianimate keys` reads and sets per-key limits and usage, which live with the jobs in Redis
    "cli": ("cli", "model", "service.api.app", "service.settings", "service.jobs"),
}
# third-party packages a room must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "model": ("fastapi", "starlette", "uvicorn", "celery", "kombu", "redis", "boto3", "httpx"),
    "service": ("torch", "torchvision"),
    "service.jobs": ("fastapi", "starlette"),
    "service.storage": ("fastapi", "starlette"),
    "service.webhooks": ("fastapi", "starlette"),
    "service.inputs": ("fastapi", "starlette"),
    "service.preflight": ("fastapi", "starlette"),
    "worker": ("fastapi", "starlette", "uvicorn"),
}
# A module of service/ or worker/ may share a name with one of model/ only when it wraps it.
WRAPS = {
    "inputs": "service/inputs/ checks uploads with model.pose's keypoint parsers before storing them",
    "preflight": "service/preflight/ adds the segment plan, GPU estimates and stored previews to "
                 "model.pose.preflight's pose report",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(name: str, rooms) -> str | None:
    matches = [room for room in rooms if name == room or name.startswith(room + ".")]
    return max(matches, key=len) if matches else None


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from service.api import problems` imports service.api.problems
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return sorted(p for top in OURS for p in (ROOT / top).rglob("*.py"))


def allowed(target: str, arrows: tuple[str, ...]) -> bool:
    # `from service.jobs import store` names both service.jobs (a package) and service.jobs.store
    return any(target == a or target.startswith(a + ".") or a.startswith(target + ".") for a in arrows)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_arrows(path: Path):
    source = module_name(path)
    room = room_of(source, ARROWS)
    assert room is not None, f"{source} is in no room of docs/architecture.md: add it to ARROWS"
    bad = sorted(name for name in imported_names(path)
                 if name.split(".")[0] in OURS and not allowed(name, ARROWS[room]))
    assert not bad, f"{source} ({room}) imports {bad}; it may import only {ARROWS[room]}"
    forbidden = {pkg for r, pkgs in FORBIDDEN.items() if room_of(source, [r]) for pkg in pkgs}
    third = sorted(name for name in imported_names(path) if name.split(".")[0] in forbidden)
    assert not third, f"{source} imports {third}"


def stems(top: str) -> set[str]:
    found = set()
    for p in (ROOT / top).rglob("*.py"):
        found.add(p.parent.name if p.name == "__init__.py" else p.stem)
    return found - {"__init__", "__main__", top}


def test_no_service_or_worker_module_shares_a_name_with_a_model_module():
    shared = (stems("service") | stems("worker")) & stems("model")
    assert shared <= set(WRAPS), f"rename {sorted(shared - set(WRAPS))}: model/ has modules of that name"


def test_the_rules_catch_a_wrong_arrow(tmp_path):
    """The checker itself: a service.jobs module importing FastAPI or the worker is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from worker.render_job import run\n    import fastapi\n")
    names = imported_names(bad)
    assert "worker.render_job.run" in names and "fastapi" in names
    assert not allowed("worker.render_job", ARROWS["service.jobs"])
    assert allowed("service.jobs.record", ARROWS["service.webhooks"])


def test_docs_architecture_describes_the_tree():
    """Every module of service/, worker/ and cli/ is placed in docs/architecture.md, and every
    module file it names exists."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    ours = [p for top in ("service", "worker", "cli") for p in (ROOT / top).rglob("*.py")
            if p.name != "__init__.py"]
    missing = sorted(str(p.relative_to(ROOT)) for p in ours if not re.search(rf"\b{p.stem}\b", text))
    assert not missing, f"docs/architecture.md does not say where these live: {missing}"
    every_stem = {p.stem for top in (*OURS, "tests") for p in (ROOT / top).rglob("*.py")}
    named = set(re.findall(r"\b(\w+)\.py\b", text)) | {
        name for group in re.findall(r"\{([\w,]+)\}\.py", text) for name in group.split(",")}
    assert named <= every_stem, f"docs/architecture.md names modules that do not exist: {sorted(named - every_stem)}"


def test_python_snippets_in_docs_and_scripts_import_what_exists():
    """`python -c '...'` lines that operators copy (secrets, checks) name modules that exist: a move
    of a module must move them too."""
    import importlib

    sources = [*ROOT.glob("docs/*.md"), *ROOT.glob("deploy/**/*.example"), ROOT / "scripts" / "stack.sh",
               ROOT / "worker" / "run.py", ROOT / "README.md"]
    found = []
    for path in sources:
        for module, names in re.findall(r"from ((?:service|worker|model|cli)[\w.]*) import ([\w, ]+)", path.read_text()):
            found.append(module)
            loaded = importlib.import_module(module)
            for name in names.split(","):
                assert hasattr(loaded, name.strip()), f"{path.relative_to(ROOT)}: {module} has no {name.strip()}"
    assert "service.webhooks.signing" in found
