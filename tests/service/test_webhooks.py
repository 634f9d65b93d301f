"""Webhook events, signing, delivery outcomes and retry timing; one real local HTTP receiver."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.webhooks.events import (
    EVENT_TYPES,
    ProgressThrottle,
    WebhookEvent,
    build_event,
    validate_event_filter,
    wants_event,
)
from service.webhooks.sender import (
    DeliveryOutcome,
    DeliveryStatus,
    backoff_delay,
    deliver,
    next_retry_delay,
    webhook_client,
)
from service.webhooks.signing import generate_secret, sign_headers, validate_secret

SECRET = generate_secret()
JOB = {"job_id": "j-1", "status": "running", "progress": {"segment": 1, "segments": 3, "fraction": 0.25}}


def _client_answering(*codes: int, headers: dict[str, str] | None = None) -> tuple[httpx.Client, list]:
    """An httpx client whose receiver answers `codes` in turn and records each request."""
    seen: list[httpx.Request] = []
    answers = iter(codes)

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(next(answers), headers=headers or {})

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


# ---------------------------------------------------------------- events


def test_event_payload_shape_and_fixed_identity() -> None:
    event = build_event("job.progress", JOB, now=1_700_000_000.25)
    assert event.id.startswith("msg_") and len(event.id) == 4 + 32
    payload = json.loads(event.body)
    assert payload == {"type": "job.progress", "timestamp": "2023-11-14T22:13:20.250Z", "data": JOB}
    assert build_event("job.progress", JOB).id != event.id  # a new event gets a new id


def test_event_survives_storage_byte_for_byte() -> None:
    event = build_event("job.succeeded", {**JOB, "note": "naïve ✓"})
    restored = WebhookEvent.from_dict(json.loads(json.dumps(event.to_dict())))
    assert restored == event and restored.body == event.body


def test_unknown_event_and_non_json_data_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook event 'job.exploded'"):
        build_event("job.exploded", JOB)
    with pytest.raises(ValueError, match="not plain JSON"):
        build_event("job.started", {"when": object()})
    with pytest.raises(ValueError, match="not plain JSON"):
        build_event("job.started", {"fraction": float("nan")})


def test_event_filter() -> None:
    assert validate_event_filter(None) is None and validate_event_filter([]) is None
    assert validate_event_filter(["job.succeeded", "job.failed"]) == {"job.succeeded", "job.failed"}
    with pytest.raises(ValueError, match=r"unknown webhook event\(s\) \['job.done'\]"):
        validate_event_filter(["job.succeeded", "job.done"])
    assert all(wants_event(t, None) for t in EVENT_TYPES)
    subscribed = {"job.succeeded", "job.failed"}
    assert [t for t in EVENT_TYPES if wants_event(t, subscribed)] == ["job.succeeded", "job.failed"]


def test_progress_throttle_per_job_with_segment_completion_always_sent() -> None:
    now = [0.0]
    throttle = ProgressThrottle(min_interval_s=10.0, clock=lambda: now[0])
    assert throttle.should_send("a")
    now[0] = 4.0
    assert not throttle.should_send("a")
    assert throttle.should_send("b")  # jobs are throttled independently
    assert throttle.should_send("a", segment_completed=True)  # segment boundary always goes out
    now[0] = 13.0
    assert not throttle.should_send("a")  # the segment event restarted a's interval at t=4
    now[0] = 14.0
    assert throttle.should_send("a")
    throttle.forget("a")
    assert throttle.should_send("a")  # a forgotten job starts fresh


# ---------------------------------------------------------------- signing


def test_signature_verifies_with_standardwebhooks() -> None:
    event = build_event("job.started", JOB)
    headers = sign_headers(event, SECRET)
    assert headers["webhook-id"] == event.id and headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(event.body, headers) == json.loads(event.body)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(event.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(event.body.replace(b"running", b"failed!"), headers)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("abc", "must start with 'whsec_'"),
        ("whsec_not*base64!", "not valid base64"),
        ("whsec_c2hvcnQ=", "24 to 64 bytes, it holds 5"),
    ],
)
def test_bad_secrets_are_explained(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_secret(secret)


# ---------------------------------------------------------------- delivery outcomes


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, DeliveryStatus.DELIVERED), (204, DeliveryStatus.DELIVERED),
        (500, DeliveryStatus.RETRY), (503, DeliveryStatus.RETRY),
        (408, DeliveryStatus.RETRY), (429, DeliveryStatus.RETRY),
        (410, DeliveryStatus.GIVE_UP), (400, DeliveryStatus.GIVE_UP),
        (401, DeliveryStatus.GIVE_UP), (404, DeliveryStatus.GIVE_UP),
        (302, DeliveryStatus.GIVE_UP),
    ],
)
def test_status_codes_map_to_outcomes(code: int, status: DeliveryStatus) -> None:
    client, _ = _client_answering(code)
    outcome = deliver(build_event("job.failed", JOB), "https://hooks.example.com/in", SECRET, client)
    assert outcome.status is status and outcome.status_code == code


def test_network_failures_are_retried() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow receiver", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for handler, prefix in [(timeout, "timeout"), (refused, "connection")]:
        client = httpx.Client(transport=httpx.MockTransport(handler))
        outcome = deliver(build_event("job.started", JOB), "https://hooks.example.com/", SECRET, client)
        assert outcome.status is DeliveryStatus.RETRY and outcome.detail.startswith(prefix)


def test_blocked_url_gives_up_without_sending() -> None:
    with webhook_client() as client:
        outcome = deliver(build_event("job.started", JOB), "https://10.0.0.1/hook", SECRET, client)
    assert outcome.status is DeliveryStatus.GIVE_UP and "private" in outcome.detail


def test_retries_resend_the_same_id_and_bytes_with_fresh_signatures() -> None:
    client, seen = _client_answering(503, 502, 200)
    event = build_event("job.segment_completed", JOB)
    stored = event.to_dict()  # what the queue carries between attempts
    url = "https://h.example.com/"
    outcomes = [deliver(WebhookEvent.from_dict(stored), url, SECRET, client) for _ in range(3)]
    retry, delivered = DeliveryStatus.RETRY, DeliveryStatus.DELIVERED
    assert [o.status for o in outcomes] == [retry, retry, delivered]
    assert {r.headers["webhook-id"] for r in seen} == {event.id}
    assert all(r.content == event.body for r in seen)
    for request in seen:
        Webhook(SECRET).verify(request.content, dict(request.headers))


def test_retry_after_is_read_and_honoured() -> None:
    client, _ = _client_answering(429, headers={"Retry-After": "120"})
    outcome = deliver(build_event("job.progress", JOB), "https://h.example.com/", SECRET, client)
    assert outcome.retry_after_s == 120.0
    assert next_retry_delay(outcome, 1, rng=lambda: 0.0) == 120.0
    assert next_retry_delay(outcome, 1, cap_s=60.0, rng=lambda: 0.0) == 60.0


# ---------------------------------------------------------------- backoff


def test_backoff_is_exponential_full_jitter_with_cap() -> None:
    top = [backoff_delay(n, base_s=2.0, cap_s=100.0, rng=lambda: 1.0) for n in range(1, 9)]
    assert top == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0, 100.0]
    assert backoff_delay(5, base_s=2.0, cap_s=100.0, rng=lambda: 0.0) == 0.0
    assert backoff_delay(3, base_s=2.0, cap_s=100.0, rng=lambda: 0.5) == 4.0
    assert backoff_delay(10_000) <= 1800.0  # no overflow for absurd attempt counts
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0)


def test_next_retry_delay_stops_when_done() -> None:
    retry = DeliveryOutcome(DeliveryStatus.RETRY, "HTTP 503", 503)
    assert next_retry_delay(retry, 1, max_attempts=3, rng=lambda: 1.0) == 5.0
    assert next_retry_delay(retry, 3, max_attempts=3) is None
    assert next_retry_delay(DeliveryOutcome(DeliveryStatus.DELIVERED, "HTTP 200", 200), 1) is None
    assert next_retry_delay(DeliveryOutcome(DeliveryStatus.GIVE_UP, "HTTP 410", 410), 1) is None


# ---------------------------------------------------------------- a real receiver


@pytest.fixture
def flaky_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """An HTTP receiver on 127.0.0.1 that answers 503 to the first POST and 204 afterwards."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(503 if len(received) == 1 else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks", received
    server.shutdown()
    server.server_close()


def test_local_receiver_fails_once_then_receives(flaky_receiver) -> None:
    url, received = flaky_receiver
    event = build_event("job.succeeded", {**JOB, "status": "succeeded"})
    with webhook_client(frozenset({"127.0.0.1"})) as client:
        first = deliver(event, url, SECRET, client)
        assert first.status is DeliveryStatus.RETRY and first.status_code == 503
        assert next_retry_delay(first, 1) is not None
        second = deliver(event, url, SECRET, client)
    assert second.status is DeliveryStatus.DELIVERED and second.status_code == 204
    assert len(received) == 2
    assert received[0][1] == received[1][1] == event.body
    assert received[0][0]["webhook-id"] == received[1][0]["webhook-id"] == event.id
    for headers, body in received:
        assert Webhook(SECRET).verify(body, headers)["data"]["status"] == "succeeded"


def test_local_receiver_is_refused_unless_allowed(flaky_receiver) -> None:
    url, received = flaky_receiver
    with webhook_client() as client:
        outcome = deliver(build_event("job.started", JOB), url, SECRET, client)
    assert outcome.status is DeliveryStatus.GIVE_UP and received == []
