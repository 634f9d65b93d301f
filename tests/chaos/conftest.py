"""Chaos tests: real processes killed, restarted and cut off while jobs run (see docs/reliability.md).

`pytest tests/chaos` (and plain `make test`) runs the fast subset; tests marked `chaos_slow` are
skipped unless CHAOS_SLOW=1 or `-m chaos_slow` selects them (`make chaos` runs everything).
Each test records what it measured with the `figures` fixture; they are printed at the end of
the run and written as JSON to $CHAOS_FIGURES when that is set; CHAOS_LOGS=DIR keeps every
process's log.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosStack, chaos_stack

FIGURES = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_slow: chaos test that takes minutes; run by `make chaos` "
                                       "(CHAOS_SLOW=1), skipped by `make test`")
    config.stash[FIGURES] = {}


def _slow_selected(config: pytest.Config) -> bool:
    return os.environ.get("CHAOS_SLOW") == "1" or "chaos_slow" in (config.getoption("markexpr", "") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _slow_selected(config):
        return
    skip = pytest.mark.skip(reason="slow chaos test: run `make chaos` (or CHAOS_SLOW=1)")
    for item in items:
        if "chaos_slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, {})
    if not figures:
        return
    terminalreporter.section("chaos figures")
    for name, values in figures.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values)}")
    if target := os.environ.get("CHAOS_FIGURES"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(figures, indent=2) + "\n")
        terminalreporter.write_line(f"written to {target}")


class Figures:
    """What one test measured, keyed by the test's name."""

    def __init__(self, store: dict, name: str) -> None:
        self.values = store.setdefault(name, {})

    def record(self, **values) -> None:
        self.values.update({k: round(v, 2) if isinstance(v, float) else v for k, v in values.items()})


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.config.stash[FIGURES], request.node.name)


@pytest.fixture(scope="package")
def chaos() -> Iterator[ChaosStack]:
    """Redis (append-only), SeaweedFS, the API and the webhook worker, restartable, for tests/chaos
    (stopped before the rest of the suite runs).
    With CHAOS_LOGS=DIR the logs and data stay in DIR/<timestamp> after the run."""
    if keep := os.environ.get("CHAOS_LOGS"):
        root = Path(keep).resolve() / time.strftime("%Y%m%d-%H%M%S")
        with chaos_stack(root) as stack:
            yield stack
        return
    with tempfile.TemporaryDirectory(prefix="unianimate-chaos-") as tmp, chaos_stack(Path(tmp)) as stack:
        yield stack
