"""Webhook signatures (Standard Webhooks): the shared secret and the per-attempt headers.

Signing happens per attempt with the attempt's time as `webhook-timestamp`: receivers reject
timestamps older than a few minutes, and a retry an hour later must still verify. The signed
content (`id.timestamp.body`) changes only in the timestamp.
"""
from __future__ import annotations

import base64
import binascii
import secrets
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

from service.webhooks.events import WebhookEvent

USER_AGENT = "unianimate-webhooks/1"


# ---------------------------------------------------------------- signing


def generate_secret(n_bytes: int = 32) -> str:
    """A new `whsec_<base64>` secret for UNIANIMATE_WEBHOOK_SECRET."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(n_bytes)).decode("ascii")


def validate_secret(secret: str) -> None:
    """Raise ValueError unless `secret` is `whsec_` + base64 of 24..64 bytes (the spec's range)."""
    hint = (
        "generate one with: "
        "python -c 'from service.webhooks.signing import generate_secret; print(generate_secret())'"
    )
    if not secret.startswith("whsec_"):
        raise ValueError(f"webhook secret must start with 'whsec_'; {hint}")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"webhook secret after 'whsec_' is not valid base64 ({exc}); {hint}") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"webhook secret must hold 24 to 64 bytes, it holds {len(key)}; {hint}")


def sign_headers(event: WebhookEvent, secret: str, *, now: float | None = None) -> dict[str, str]:
    """The request headers for one attempt, signed for the attempt's time."""
    validate_secret(secret)
    attempt_time = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    signature = Webhook(secret).sign(event.id, attempt_time, event.body.decode("ascii"))
    return {
        "webhook-id": event.id,
        "webhook-timestamp": str(int(attempt_time.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
