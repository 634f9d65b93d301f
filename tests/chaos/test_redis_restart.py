"""Promise 5: Redis restarted (SIGTERM) or crashing (SIGKILL) in the middle of a job loses no queued
or running job (its append-only file, fsynced on every write, keeps the records and the queue), and
while it is down the API answers 503 with Retry-After, never 500."""
from __future__ import annotations

import time

import pytest

from tests.chaos.scenario import TERMINAL, eventually, segments_done, submit, wait_for_status
from tests.integration.test_end_to_end import upload

pytestmark = pytest.mark.chaos_slow
DOWN_S = 5.0


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "crash"])
def test_a_redis_restart_loses_no_job_and_the_api_answers_503_meanwhile(chaos, figures, crash):
    answers: list[tuple[str, int, str | None]] = []
    with chaos.render_workers(1), chaos.client() as client:
        running = submit(client, seconds=4.0)
        queued = submit(client, seconds=1.0)  # one render process: this one waits in the queue
        eventually(lambda: segments_done(client.get(f"/jobs/{running}").json()), 120, "a first finished segment")
        assert client.get(f"/jobs/{queued}").json()["status"] == "queued"

        def probe() -> None:
            deadline = time.monotonic() + DOWN_S - 1
            while time.monotonic() < deadline:
                for method, path, kwargs in (("GET", f"/jobs/{running}", {}), ("GET", "/readyz", {}),
                                             ("POST", f"/jobs/{queued}/cancel", {}),
                                             ("POST", "/animate", upload(seconds=1.0))):
                    response = client.request(method, path, **kwargs)
                    answers.append((f"{method} {path.replace(running, '{id}').replace(queued, '{id}')}",
                                    response.status_code, response.headers.get("retry-after")))
                time.sleep(0.2)

        down_s = chaos.restart_redis(DOWN_S, while_down=probe, crash=crash)
        back = time.monotonic()
        first = wait_for_status(client, running, TERMINAL)
        second = wait_for_status(client, queued, TERMINAL)
        recovered_s = time.monotonic() - back

    statuses = {(what, status) for what, status, _ in answers}
    assert {status for _, status in statuses} == {503}, sorted(statuses)
    assert all(retry == "5" for what, _, retry in answers if what != "GET /readyz")
    assert first["status"] == second["status"] == "succeeded", (first["error"], second["error"])
    assert (first["result"]["frames"], second["result"]["frames"]) == (60, 15)
    attempts = [s["attempts"] for s in first["segments"]]
    assert sum(n - 1 for n in attempts) <= 1, f"at most one segment rendered again: {attempts}"
    figures.record(redis_down_s=down_s, requests_while_down=len(answers), answers=sorted({s for _, s in statuses}),
                   endpoints=sorted({w for w, _ in statuses}), jobs_lost=0, runs_of_running_job=first["runs"],
                   segments_rerendered=sum(n - 1 for n in attempts), all_done_after_restart_s=recovered_s)
