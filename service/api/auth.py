"""Bearer-key authentication. A job belongs to the key that made it: the record keeps only
the key's sha256 (`owner`), and other keys get 404 for it, as if it did not exist."""
from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.api.problems import Problem
from service.api.state import app_state

ANONYMOUS = "anonymous"


def key_owner(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate(request: Request) -> str:
    """The caller's owner id; 401 problem when keys are configured and none valid was sent."""
    keys = app_state(request).settings.api_keys
    if not keys:
        return ANONYMOUS
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "unauthorized", "send `Authorization: Bearer <api key>`",
                      headers={"WWW-Authenticate": 'Bearer realm="unianimate"'})
    if not any(hmac.compare_digest(token.encode(), key.get_secret_value().encode()) for key in keys):
        raise Problem(401, "unauthorized", "the API key is not valid",
                      headers={"WWW-Authenticate": 'Bearer realm="unianimate", error="invalid_token"'})
    return key_owner(token)


Owner = Annotated[str, Depends(authenticate)]
