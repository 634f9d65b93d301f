"""Fixtures shared by the model tests."""
from __future__ import annotations

import pytest

from model.pipeline import UniAnimatePipeline


@pytest.fixture(scope="session")
def pipeline() -> UniAnimatePipeline:
    """The tiny untrained pipeline (seed 0), built once: tests read it and never change it."""
    return UniAnimatePipeline.tiny(seed=0)
