"""Fixtures of the command-line tests: the tiny pipeline and the pose cases the model tests use."""
from __future__ import annotations

from tests.model.conftest import pipeline  # noqa: F401  (pytest fixtures)
from tests.model.pose.conftest import align_case, draw_case, dwpose_dir, photo  # noqa: F401
from tests.support.fixtures import redis_service, redis_url  # noqa: F401  (`unianimate api` needs a Redis)
