"""Reject request bodies over a size limit while they stream in, before they are all read.

A pure ASGI middleware: a declared Content-Length over the limit is answered 413 at once;
otherwise the bytes are counted as the app receives them, and at the first byte over the
limit the client gets 413 and the app's receive() raises, so the app stops reading.
"""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import MEDIA_TYPE, TYPE_PREFIX


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return

        received = 0
        state = {"started": False, "rejected": False}

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not state["started"]:
                        state["rejected"] = True
                        await self._reject(scope, send)
                    raise BodyTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return  # the 413 has been sent; whatever the app answers now is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not state["rejected"]:
                raise

    async def _reject(self, scope: Scope, send: Send) -> None:
        body = json.dumps({
            "type": TYPE_PREFIX + "too-large", "title": "Content Too Large", "status": 413,
            "detail": f"the request body is larger than {self.max_bytes} bytes; send smaller files",
            "instance": scope.get("path", ""),
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
