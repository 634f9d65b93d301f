"""What every hostile request must leave behind: a 4xx problem+json, and nothing else."""
from __future__ import annotations

from pathlib import Path

from tests.service.test_api_errors import assert_problem


def assert_refused(response, state, storage_dir: Path, status: int = 422, field: str | None = None) -> dict:
    """A 4xx problem naming `field` (if given); no job recorded or queued, no file stored."""
    body = assert_problem(response, status)
    if field is not None:
        assert body.get("field") == field or field in body["detail"], body
    assert sum(state.jobs.counts_by_status().values()) == 0
    assert state.jobs.redis.keys("unianimate:job:*") == []
    assert not [p for p in storage_dir.rglob("*") if p.is_file()] if storage_dir.exists() else True
    return body
