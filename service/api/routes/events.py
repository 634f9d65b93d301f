"""GET /jobs/{id}/events: Server-Sent Events replayed from the job's Redis Stream.

Each event carries the stream id as its SSE `id`, so a client that reconnects with
`Last-Event-ID` continues where it stopped. sse-starlette frames the events and sends a
`: keep-alive` comment every `sse_keepalive_s`, so proxies keep idle connections open. The stream
ends after the event that moves the job to a terminal state.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import APIRouter, Header
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from service.api.auth import Owner
from service.api.problems import problem_responses
from service.api.routes.jobs import load_job
from service.api.state import AppState, State
from service.jobs.record import JobStatus
from service.jobs.store import parse_stream_reply

router = APIRouter(tags=["jobs"])
_STREAM_ID = re.compile(r"^\d+-\d+$")
TERMINAL_VALUES = {status.value for status in JobStatus if status.terminal}


@router.get("/jobs/{job_id}/events", name="job_events",
            responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"},
                       **problem_responses(401, 404, 503)})
async def job_events(job_id: str, owner: Owner, state: State,
                     last_event_id: Annotated[str | None, Header(description="resume after this event id")]
                     = None) -> EventSourceResponse:
    """Events: `status`, `progress`, `segment`, `cancel_requested`; data is JSON."""
    job = await run_in_threadpool(load_job, job_id, owner, state)
    after = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else "0-0"
    stream = _stream(state, job_id, after, already_over=job.status.terminal)
    return EventSourceResponse(stream, ping=state.settings.sse_keepalive_s, sep="\n",
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"))


async def _stream(state: AppState, job_id: str, after: str, already_over: bool) -> AsyncIterator[ServerSentEvent]:
    settings = state.settings
    # XREAD blocks for up to a keep-alive interval, so the socket must wait longer than that
    # (redis-py's default read timeout would cut every quiet stream after a few seconds).
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_timeout_s,
                                     socket_timeout=settings.sse_keepalive_s + settings.redis_timeout_s)
    keepalive_ms = int(settings.sse_keepalive_s * 1000)
    try:
        yield ServerSentEvent(retry=keepalive_ms)
        while True:
            block = None if already_over else keepalive_ms  # a finished job: drain without waiting
            reply = await client.xread({state.jobs.stream_key(job_id): after}, count=100, block=block)
            events = parse_stream_reply(reply)
            if not events:
                if already_over:
                    return
                continue  # quiet: the response's own pings keep the connection open
            for event in events:
                after = event.id
                yield ServerSentEvent(json.dumps(event.data), event=event.event, id=event.id)
                if event.event == "status" and event.data.get("status") in TERMINAL_VALUES:
                    return
    finally:
        await client.aclose()
