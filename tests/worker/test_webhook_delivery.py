"""Webhook events: filtered, throttled, recorded once, delivered signed with the same id and bytes."""
from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook as Verifier

from service.jobs.record import JobStatus, Webhook
from service.webhooks.delivery import RetryPolicy, deliver_recorded
from service.webhooks.outbox import WebhookOutbox, job_events_key, record_key
from service.webhooks.sender import webhook_client
from tests.worker.fakes import store_job
from tests.worker.receiver import webhook_receiver

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NO_WAIT = RetryPolicy(max_attempts=3, base_s=0.0, cap_s=0.0)


@pytest.fixture
def outbox(jobs):
    sent: list[str] = []
    box = WebhookOutbox(jobs.redis, sent.append, prefix=jobs.prefix, progress_interval_s=60)
    box.sent = sent
    return box


def running_job(jobs, storage, url: str, events: list[str]):
    job = store_job(jobs, storage, webhook=Webhook(url=url, events=events))
    return jobs.transition(job.id, JobStatus.RUNNING, worker="w")


def test_events_are_filtered_throttled_and_recorded(jobs, storage, outbox):
    job = running_job(jobs, storage, "https://example.com/h", ["job.progress", "job.segment_completed"])
    assert outbox.emit(job, "job.started") is None, "not subscribed"
    first = outbox.emit(job, "job.progress")
    assert first is not None and outbox.emit(job, "job.progress") is None, "throttled"
    segment = outbox.emit(job, "job.segment_completed")
    assert outbox.sent == [first, segment]
    assert [i.decode() for i in jobs.redis.lrange(job_events_key(jobs.prefix, job.id), 0, -1)] == outbox.sent
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, first)))
    assert record["url"] == "https://example.com/h" and record["status"] == "pending"
    assert json.loads(record["event"]["body"])["data"]["id"] == job.id


def test_a_job_gets_at_most_one_terminal_event(jobs, storage, outbox):
    job = running_job(jobs, storage, "https://example.com/h", None)
    assert outbox.emit(job, "job.canceled") is not None
    assert outbox.emit(job, "job.failed") is None and outbox.emit(job, "job.canceled") is None
    assert len(outbox.sent) == 1


def test_a_failed_delivery_is_retried_with_the_same_id_and_bytes(jobs, storage, outbox):
    with webhook_receiver([503]) as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.started"])
        event_id = outbox.emit(job, "job.started")
        with webhook_client(frozenset({"127.0.0.1"})) as http:
            delay = deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, policy=NO_WAIT,
                                     prefix=jobs.prefix)
            assert delay == 0.0
            assert deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, policy=NO_WAIT,
                                    prefix=jobs.prefix) is None
        first, second = receiver.wait_for(2, 5)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    assert first.body == second.body
    payload = Verifier(SECRET).verify(second.body, second.headers)
    assert payload["type"] == "job.started" and payload["data"]["id"] == job.id
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))
    assert (record["attempts"], record["status"], record["detail"]) == (2, "delivered", "HTTP 200")


def test_410_gone_stops_delivery(jobs, storage, outbox):
    with webhook_receiver([410]) as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.started"])
        event_id = outbox.emit(job, "job.started")
        with webhook_client(frozenset({"127.0.0.1"})) as http:
            assert deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, policy=NO_WAIT,
                                    prefix=jobs.prefix) is None
    assert json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))["status"] == "failed"


def test_a_private_address_is_refused_unless_allowed(jobs, storage, outbox):
    with webhook_receiver() as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.started"])
        event_id = outbox.emit(job, "job.started")
        with webhook_client() as http:
            assert deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, policy=NO_WAIT,
                                    prefix=jobs.prefix) is None
        assert receiver.requests == []
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))
    assert record["status"] == "failed" and record["detail"].startswith("blocked")
