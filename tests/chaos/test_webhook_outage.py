"""Promise 7: a webhook receiver that fails, then is gone, then comes back gets the event: every
attempt carries the same `webhook-id` and byte-identical signed body, retried with backoff until
delivered. A receiver that answers `410 Gone` is not called again."""
from __future__ import annotations

import json
import time

from standardwebhooks import Webhook as Verifier

from tests.chaos.scenario import eventually, outbox_records, submit, wait_for_status
from tests.integration.stack import WEBHOOK_SECRET
from tests.support.procs import free_port
from tests.worker.receiver import webhook_receiver

BACKOFF_CAP_S = 1.0  # UNIANIMATE_WEBHOOK_BACKOFF_CAP_S of the stack: retries come at most this far apart


def _record(jobs, job_id: str) -> dict:
    (record,) = outbox_records(jobs, job_id)
    return record


def test_a_receiver_that_fails_then_goes_away_then_returns_gets_the_same_event(chaos, figures):
    jobs = chaos.jobs()
    port = free_port()
    with chaos.render_workers(1), chaos.client() as client:
        with webhook_receiver([503] * 20, port=port) as failing:  # fails whatever arrives before it goes
            job_id = submit(client, seconds=1.0, webhook_url=failing.url, webhook_events="job.succeeded")
            wait_for_status(client, job_id, {"succeeded"})
            failing.wait_for(2, timeout_s=30)
        went_down = _record(jobs, job_id)["attempts"]
        down_at = time.monotonic()
        eventually(lambda: _record(jobs, job_id)["attempts"] >= went_down + 3, 30, "three attempts while it is down")
        with webhook_receiver(port=port) as back:
            up_at = time.monotonic()
            (delivery,) = back.wait_for(1, timeout_s=30)
            delivered_after_s = time.monotonic() - up_at
            eventually(lambda: _record(jobs, job_id)["status"] == "delivered", 10, "the record says delivered")
        record = _record(jobs, job_id)

    answered = len(failing.requests)
    refused = record["attempts"] - answered - 1
    received = [*failing.requests, delivery]
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert len({r.body for r in received}) == 1, "every attempt sends the same bytes"
    for request in received:
        assert Verifier(WEBHOOK_SECRET).verify(request.body, request.headers)["data"]["id"] == job_id
    assert record["event"]["id"] == delivery.headers["webhook-id"]
    assert json.loads(delivery.body)["type"] == "job.succeeded"
    assert answered >= 2 and refused >= 3, "more attempts than Celery's default retry limit (3)"
    figures.record(attempts=record["attempts"], answered_503=answered, refused_while_down=refused,
                   down_s=up_at - down_at, delivered_after_back_s=delivered_after_s,
                   distinct_webhook_ids=1, distinct_bodies=1)


def test_410_gone_stops_the_retries(chaos, figures):
    jobs = chaos.jobs()
    with chaos.render_workers(1), chaos.client() as client, webhook_receiver([410, 410, 410]) as gone:
        job_id = submit(client, seconds=1.0, webhook_url=gone.url, webhook_events="job.succeeded")
        wait_for_status(client, job_id, {"succeeded"})
        gone.wait_for(1, timeout_s=30)
        eventually(lambda: _record(jobs, job_id)["status"] == "failed", 10, "delivery given up")
        time.sleep(4 * BACKOFF_CAP_S)  # several retry periods: nothing more arrives
        calls = len(gone.requests)
    record = _record(jobs, job_id)
    assert calls == 1 and record["attempts"] == 1 and "410" in record["detail"]
    figures.record(attempts=record["attempts"], requests_after_410=calls - 1)
