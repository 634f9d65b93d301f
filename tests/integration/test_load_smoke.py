"""The fast subset of `make load` (bench/load.py's own machinery, run by `make test`): a real uvicorn
API on a private redis-server, 20 concurrent submissions, 3 s of status polling; no job lost."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from bench.load import KEY, KEY_LIMITS, run
from tests.hostile.api_process import api_process
from tests.support.redis_server import redis_server

pytestmark = pytest.mark.integration
JOBS = 20


def test_a_small_load_loses_no_job(tmp_path: Path) -> None:
    args = argparse.Namespace(jobs=JOBS, poll_seconds=3.0, pollers=5, ratio_seconds=1.0)
    with redis_server() as redis, api_process(redis.url, tmp_path, api_keys=KEY, **KEY_LIMITS) as api:
        report = asyncio.run(run(args, api.url, redis.url))
    assert report.submit.statuses == {202: JOBS}, report.submit.statuses  # every submission accepted at once
    assert report.accepted == JOBS and report.retries == 0
    assert report.lost == [], report.lost
    assert report.status.statuses and set(report.status.statuses) == {200}, report.status.statuses
    assert report.not_queued == 0  # no worker: every job stays queued
    assert "**Jobs lost: 0** of 20 accepted" in report.markdown()
    # the status-vs-healthz comparison ran, on answers that succeeded (its ratio is bench/'s to judge)
    compared = report.comparison
    for samples in (compared.healthz, compared.status, compared.healthz_paced, compared.status_paced):
        assert samples.statuses and set(samples.statuses) == {200}, samples.statuses
    assert "Throughput ratio status/healthz" in report.markdown()
