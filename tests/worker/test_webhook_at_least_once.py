"""Webhook events survive Redis and broker failures: recorded atomically, re-sent by the relay when
their message is lost, retried (not dropped) on a Redis error, one terminal event per job."""
from __future__ import annotations

import json
import time

import pytest
import redis
from kombu.exceptions import OperationalError

from service.jobs.queue import enqueue_webhook, make_celery
from service.jobs.record import JobStatus, Webhook
from service.jobs.store import JobStore
from service.storage.objects import LocalStorage
from service.webhooks.delivery import IN_FLIGHT_S, RetryPolicy, deliver_recorded
from service.webhooks.outbox import WebhookOutbox, due_key, job_events_key, record_key
from service.webhooks.sender import webhook_client
from tests.worker.fakes import store_job
from tests.worker.flaky_redis import FailurePlan, flaky_client
from tests.worker.receiver import webhook_receiver
from worker import celery_app
from worker.broker_queue import BrokerQueue
from worker.settings import WEBHOOK_QUEUE, WorkerSettings
from worker.webhook_relay import relay_overdue

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NO_WAIT = RetryPolicy(max_attempts=3, base_s=0.0, cap_s=0.0)
LATER = 3600.0  # a relay clock this far ahead finds every recorded event overdue


def running_job(jobs, storage, url: str = "https://example.com/h", events: list[str] | None = None):
    job = store_job(jobs, storage, webhook=Webhook(url=url, events=events))
    return jobs.transition(job.id, JobStatus.RUNNING, worker="w")


def terminal_events(jobs: JobStore, job_id: str) -> list[dict]:
    ids = [raw.decode() for raw in jobs.redis.lrange(job_events_key(jobs.prefix, job_id), 0, -1)]
    records = [json.loads(jobs.redis.get(record_key(jobs.prefix, event_id))) for event_id in ids]
    return [r for r in records if r["event"]["type"] in {"job.succeeded", "job.failed", "job.canceled"}]


def due_ids(jobs: JobStore) -> set[str]:
    return {raw.decode() for raw in jobs.redis.zrange(due_key(jobs.prefix), 0, -1)}


@pytest.mark.parametrize(("lost", "command"), [("before", 1), ("after", 1), ("before", 2), ("after", 2)])
def test_a_redis_failure_while_recording_never_loses_the_terminal_event(jobs, storage, redis_url, lost, command):
    """The claim, the record and the due time are one step: whatever part of it a failure cuts, the
    worker's next try or the relay sends the job's one terminal event."""
    job = running_job(jobs, storage)
    plan = FailurePlan(**{lost: {command}})
    sent: list[str] = []
    outbox = WebhookOutbox(flaky_client(redis_url, plan), sent.append, prefix=jobs.prefix)
    for _ in range(3):  # the worker tries again (render_job._announce_end)
        try:
            outbox.emit(job, "job.succeeded")
        except redis.RedisError:
            continue
    assert plan.failed == 1
    (event,) = terminal_events(jobs, job.id)
    assert event["status"] == "pending"
    event_id = event["event"]["id"]
    relayed: list[str] = []
    relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix,
                  clock=lambda: time.time() + LATER)
    assert event_id in sent + relayed, "the event is enqueued now, or by the relay"
    assert outbox.emit(job, "job.failed") is None and len(terminal_events(jobs, job.id)) == 1


def test_an_event_the_broker_refused_is_sent_by_the_relay(jobs, storage):
    def refuse(event_id: str) -> None:
        raise OperationalError("broker unreachable")

    job = running_job(jobs, storage)
    event_id = WebhookOutbox(jobs.redis, refuse, prefix=jobs.prefix).emit(job, "job.succeeded")
    assert event_id is not None, "the event is recorded even though it could not be enqueued"
    before = jobs.redis.get(record_key(jobs.prefix, event_id))
    relayed: list[str] = []
    assert relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix) == []
    now = time.time() + 61
    assert relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix,
                         clock=lambda: now) == [event_id]
    assert relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix,
                         clock=lambda: now + 1) == [], "taken once per overdue period"
    assert jobs.redis.get(record_key(jobs.prefix, event_id)) == before, "the same id and bytes go out"


def test_the_relay_leaves_waiting_and_finished_events_alone(jobs, storage, redis_url):
    job = running_job(jobs, storage, "https://example.com/h", None)
    broker = make_celery(redis_url)
    waiting = WebhookOutbox(jobs.redis, lambda event_id: enqueue_webhook(broker, event_id),
                            prefix=jobs.prefix, progress_interval_s=0).emit(job, "job.progress")
    lost = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix).emit(job, "job.segment_completed")
    finished = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix).emit(job, "job.started")
    with webhook_client() as http:  # example.com is not called: its record says the delivery is over
        jobs.redis.set(record_key(jobs.prefix, finished), json.dumps(
            {**json.loads(jobs.redis.get(record_key(jobs.prefix, finished))), "status": "delivered"}))
        assert deliver_recorded(jobs.redis, finished, secret=SECRET, http=http, policy=NO_WAIT,
                                prefix=jobs.prefix) is None
    relayed: list[str] = []
    relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=BrokerQueue(jobs.redis, WEBHOOK_QUEUE),
                  prefix=jobs.prefix, clock=lambda: time.time() + LATER)
    assert relayed == [lost], "a message for `waiting` is still in the queue; `finished` is delivered"
    assert due_ids(jobs) == {waiting, lost}


def test_a_retry_whose_message_died_with_its_worker_is_relayed_and_keeps_counting(jobs, storage):
    with webhook_receiver([503, 503, 200]) as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.started"])
        event_id = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix).emit(job, "job.started")
        with webhook_client(frozenset({"127.0.0.1"})) as http:
            now = [time.time()]  # the clock every party reads, moved by hand

            def deliver() -> float | None:
                return deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, prefix=jobs.prefix,
                                        policy=RetryPolicy(max_attempts=3, base_s=30, cap_s=30),
                                        clock=lambda: now[0])

            delay = deliver()  # attempt 1: 503, retry due in about 30 s; the worker holding it then dies
            relayed: list[str] = []
            now[0] += 60
            relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix,
                          clock=lambda: now[0])
            assert delay is not None and relayed == [], "not overdue yet: the retry may still come"
            now[0] += delay + 1
            relay_overdue(jobs.redis, relayed.append, overdue_s=60, queue=None, prefix=jobs.prefix,
                          clock=lambda: now[0])
            assert relayed == [event_id]
            second = deliver()  # attempt 2 (503), from the relayed message
            assert second is not None
            assert deliver() is None, "a copy before the retry is due sends nothing"
            now[0] += second
            assert deliver() is None  # attempt 3 (200), when it is due
        requests = receiver.wait_for(3, 5)
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))
    assert (record["attempts"], record["status"]) == (3, "delivered"), "the relayed copy went on counting"
    assert len({r.headers["webhook-id"] for r in requests}) == 1 and len({r.body for r in requests}) == 1
    assert due_ids(jobs) == set()


def test_a_second_copy_never_attempts_while_an_attempt_is_in_flight_or_not_yet_due(jobs, storage):
    """The relay cannot see messages a worker has reserved: a copy it sends then runs beside the
    original. Only one of them may attempt, and a retry's backoff holds for every copy."""
    with webhook_receiver([503, 200]) as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.started"])
        event_id = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix).emit(job, "job.started")
        with webhook_client(frozenset({"127.0.0.1"})) as http:
            now = [time.time()]

            def deliver() -> float | None:
                return deliver_recorded(jobs.redis, event_id, secret=SECRET, http=http, prefix=jobs.prefix,
                                        policy=RetryPolicy(max_attempts=3, base_s=30, cap_s=30),
                                        clock=lambda: now[0])

            in_flight: list[float | None] = []
            receiver.on_request = lambda: in_flight.append(deliver())  # a copy runs during the attempt
            delay = deliver()
            receiver.on_request = None
            assert in_flight == [None], "the copy beside the in-flight attempt did nothing"
            assert delay is not None and deliver() is None, "nor does one before the retry is due"
            now[0] += delay
            assert deliver() is None  # the retry, on time: delivered
        requests = receiver.wait_for(2, 5)
    assert len(requests) == 2
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))
    assert (record["attempts"], record["status"]) == (2, "delivered")


def test_an_attempt_holds_its_event_longer_than_the_delivery_task_may_run():
    from worker.celery_app import WEBHOOK_SOFT_TIME_LIMIT_S, deliver_webhook

    assert IN_FLIGHT_S > deliver_webhook.time_limit >= WEBHOOK_SOFT_TIME_LIMIT_S


def test_a_redis_error_during_delivery_retries_the_task_instead_of_dropping_it(jobs, storage, redis_url,
                                                                               monkeypatch, tmp_path):
    """Failing the task would acknowledge its message and lose the event. (Eagerly, Celery runs the
    retry at once; in a worker it comes after a backoff.)"""
    with webhook_receiver([200]) as receiver:
        job = running_job(jobs, storage, receiver.url, ["job.succeeded"])
        event_id = WebhookOutbox(jobs.redis, lambda event_id: None, prefix=jobs.prefix).emit(job, "job.succeeded")
        settings = WorkerSettings(_env_file=None, redis_url=redis_url, webhook_secret=SECRET,
                                  webhook_allow_hosts={"127.0.0.1"})
        plan = FailurePlan(before={1})  # reading the record fails once
        runtime = celery_app.Runtime(settings, JobStore(flaky_client(redis_url, plan), jobs.prefix),
                                     LocalStorage(tmp_path), celery_app.renderer_factory)
        monkeypatch.setattr(celery_app, "_runtime", runtime)
        result = celery_app.deliver_webhook.apply(args=[event_id])
        assert result.state == "SUCCESS", result.traceback
        (request,) = receiver.wait_for(1, 5)
    assert plan.failed == 1 and request.headers["webhook-id"] == event_id
    record = json.loads(jobs.redis.get(record_key(jobs.prefix, event_id)))
    assert (record["attempts"], record["status"]) == (1, "delivered"), "the Redis error used no delivery attempt"
