"""Bearer-key authentication. A job belongs to the key that made it: the record keeps only
the key's sha256 (`owner`), and other keys get 404 for it, as if it did not exist.

Every authenticated request also takes a token from its key's rate limit (service.jobs.key_limits);
an empty bucket answers 429 with Retry-After. GET /jobs/{id} calls `authenticated_key` itself and
takes its token in the same Redis round trip as its read.
"""
from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request

from service.api.problems import Problem
from service.api.state import app_state
from service.jobs.key_limits import LimitExceeded
from service.jobs.owners import key_owner

ANONYMOUS = "anonymous"


async def authenticated_key(request: Request) -> str:
    """The caller's owner id; 401 problem when keys are configured and none valid was sent.

    The configured keys are hashed once (AppState.key_owners); a request's token is hashed and
    looked up among those digests, which compares digests, not secrets, so it leaks no timing
    about a key. Async: no thread hop for what is a dictionary lookup."""
    owners = app_state(request).key_owners
    if not owners:
        return ANONYMOUS
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "unauthorized", "send `Authorization: Bearer <api key>`",
                      headers={"WWW-Authenticate": 'Bearer realm="unianimate"'})
    owner = key_owner(token)
    if owner not in owners:
        raise Problem(401, "unauthorized", "the API key is not valid",
                      headers={"WWW-Authenticate": 'Bearer realm="unianimate", error="invalid_token"'})
    return owner


async def authenticate(request: Request) -> str:
    """`authenticated_key`, then one token of the key's request rate."""
    owner = await authenticated_key(request)
    try:
        await app_state(request).fast_reads().take_token(owner)
    except LimitExceeded as exc:
        raise limit_problem(exc) from None
    return owner


def limit_problem(exc: LimitExceeded) -> Problem:
    """429 naming the limit hit; Retry-After in whole seconds (at least 1)."""
    return Problem(429, "limit-exceeded", exc.detail, limit=exc.limit,
                   headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})


Owner = Annotated[str, Depends(authenticate)]
