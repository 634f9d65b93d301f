"""Promise 4: a job that kills every worker process that renders it ends `failed` after
UNIANIMATE_MAX_ATTEMPTS runs; it is not taken up again after that, and the workers stay up for
other jobs."""
from __future__ import annotations

import time

from tests.chaos.faulty_worker import POISON_SEED
from tests.chaos.scenario import TERMINAL, submit, wait_for_status
from worker.render_job import Outcome

MAX_ATTEMPTS = 3


def test_a_poison_job_fails_after_max_attempts_and_is_not_retried(chaos, figures):
    jobs = chaos.jobs()
    settings = {"UNIANIMATE_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    with chaos.render_workers(2, faulty=True, **settings) as workers, chaos.client() as client:
        started = time.monotonic()
        poison = submit(client, seconds=1.0, params={"seed": POISON_SEED})
        job = wait_for_status(client, poison, TERMINAL, timeout_s=120)
        failed_after_s = time.monotonic() - started
        time.sleep(4)  # two lease lifetimes and many sweeps: nothing takes it up again
        after = client.get(f"/jobs/{poison}").json()
        healthy = wait_for_status(client, submit(client, seconds=1.0), TERMINAL)
        crashes = sum(text.count("exited with 'signal 9 (SIGKILL)'") for text in (w.text() for w in workers))
        alive = all(w.alive for w in workers)

    assert job["status"] == "failed" and job["error"]["code"] == "too_many_attempts", job
    assert job["runs"] == MAX_ATTEMPTS and crashes == MAX_ATTEMPTS
    assert after == job, "a failed job stays failed: no further run"
    assert jobs.redis.llen("render") == 0 and not jobs.redis.exists(f"{jobs.prefix}:lease:{poison}")
    assert alive and healthy["status"] == Outcome.SUCCEEDED.value, "the workers still render other jobs"
    figures.record(max_attempts=MAX_ATTEMPTS, runs=job["runs"], worker_processes_killed=crashes,
                   time_to_failed_s=failed_after_s)
