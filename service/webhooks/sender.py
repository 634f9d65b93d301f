"""One webhook delivery attempt over HTTP, and what its outcome means for the next one.

`deliver` makes one attempt through the outbound-URL guard; `next_retry_delay` turns its outcome
into "retry in N seconds" or "stop". Nothing here imports Celery: the at-least-once bookkeeping
around it is `delivery.py`, run by the worker's webhooks queue.
"""
from __future__ import annotations

import email.utils
import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from service.netguard import BlockedURL, UnresolvableURL, pinned_client
from service.webhooks.events import WebhookEvent
from service.webhooks.signing import sign_headers

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_BACKOFF_BASE_S = 5.0
DEFAULT_BACKOFF_CAP_S = 1800.0
DELIVERY_TIMEOUT_S = 10.0
# 4xx answers that mean "not now" rather than "never".
_RETRYABLE_4XX = frozenset({408, 425, 429})



# ---------------------------------------------------------------- delivery


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class DeliveryOutcome:
    status: DeliveryStatus
    detail: str  # short, loggable: "HTTP 503", "timeout: ...", "blocked: ..."
    status_code: int | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, when it sent one


def webhook_client(allow_hosts: frozenset[str] = frozenset()) -> httpx.Client:
    """The client `deliver` expects: guarded and pinned, no redirects (a 301/302 would turn the POST
    into a GET without the body), a short timeout so a slow receiver cannot stall the queue."""
    return pinned_client(allow_hosts, timeout=DELIVERY_TIMEOUT_S, follow_redirects=False)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _classify(response: httpx.Response) -> DeliveryOutcome:
    code = response.status_code
    detail = f"HTTP {code}"
    if 200 <= code < 300:
        return DeliveryOutcome(DeliveryStatus.DELIVERED, detail, code)
    if code >= 500 or code in _RETRYABLE_4XX:
        return DeliveryOutcome(
            DeliveryStatus.RETRY, detail, code, _retry_after_s(response.headers.get("retry-after"))
        )
    if 300 <= code < 400:
        detail += f" redirect to {response.headers.get('location', '?')}; configure the final URL"
    # 410 Gone says the endpoint is retired; other 4xx reject these exact bytes, which a retry resends.
    return DeliveryOutcome(DeliveryStatus.GIVE_UP, detail, code)


def deliver(event: WebhookEvent, url: str, secret: str, client: httpx.Client) -> DeliveryOutcome:
    """One delivery attempt of `event` to `url`. Never raises for network or receiver trouble;
    use `webhook_client()` for `client` so the URL guard applies."""
    headers = sign_headers(event, secret)
    try:
        with client.stream("POST", url, content=event.body, headers=headers) as response:
            return _classify(response)  # the receiver's body is never read
    except UnresolvableURL as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"dns: {exc}")
    except (BlockedURL, httpx.InvalidURL) as exc:
        return DeliveryOutcome(DeliveryStatus.GIVE_UP, f"blocked: {exc}")
    except httpx.TimeoutException as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"timeout: {exc!r}")
    except httpx.TransportError as exc:
        return DeliveryOutcome(DeliveryStatus.RETRY, f"connection: {exc!r}")


# ---------------------------------------------------------------- retries


def backoff_delay(
    attempt: int,
    *,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): "full jitter", uniform in
    [0, min(cap, base * 2**(attempt-1))), so many failed deliveries do not retry in lockstep."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    return rng() * ceiling


def next_retry_delay(
    outcome: DeliveryOutcome,
    attempt: int,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """After attempt `attempt` ended in `outcome`: seconds until the next attempt, or None to stop
    (delivered, given up, or `max_attempts` used). A receiver's Retry-After is honoured up to the cap."""
    if outcome.status is not DeliveryStatus.RETRY or attempt >= max_attempts:
        return None
    delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s, rng=rng)
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, cap_s))
    return delay
