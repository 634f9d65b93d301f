"""GET /jobs/{id}/events: Server-Sent Events replayed from the job's Redis Stream.

Each event carries the stream id as its SSE `id`, so a client that reconnects with
`Last-Event-ID` continues where it stopped. sse-starlette frames the events and sends a
`: keep-alive` comment every `sse_keepalive_s`, so proxies keep idle connections open. The stream
ends after the event that moves the job to a terminal state.

Two things are added here rather than stored: each `segment` event's `live_url` (the API's playlist
route, service/api/routes/live.py), and, while the job is queued, a `queue` event whenever its
queue position changes. The position is read once per pass of the loop, which wakes every 2 s
while the job is queued (every `sse_keepalive_s` after), so a waiting client costs one small Lua call
per 2 s.
The `queue` event has no `id`: it is not in the job's stream, and a reconnect resumes after the
last stored event as before.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Request
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
QUEUE_POLL_MS = 2000  # how often a queued job's stream reads its queue position (one small Lua call)


@router.get("/jobs/{job_id}/events", name="job_events",
            responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"},
                       **problem_responses(401, 404, 503)})
async def job_events(job_id: str, request: Request, owner: Owner, state: State,
                     last_event_id: Annotated[str | None, Header(description="resume after this event id")]
                     = None) -> EventSourceResponse:
    """Events: `status`, `progress`, `segment`, `cancel_requested`, and `queue` while queued; data is JSON."""
    job = await run_in_threadpool(load_job, job_id, owner, state)
    after = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else "0-0"
    follow = _Follow(owner, job_id, str(request.url_for("job_live_playlist", job_id=job_id)), job.status.value)
    stream = _stream(state, follow, after, already_over=job.status.terminal)
    return EventSourceResponse(stream, ping=state.settings.sse_keepalive_s, sep="\n",
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"))


@dataclass
class _Follow:
    """The job a stream follows, and what the stream last told about it."""
    owner: str
    job_id: str
    live_url: str
    status: str
    queue_position: int | None = None

    def event(self, name: str, data: dict) -> dict:
        if name == "status":
            self.status = data.get("status", self.status)
        if name == "segment":
            return data | {"live_url": self.live_url}
        return data


async def _queue_event(state: AppState, follow: _Follow) -> ServerSentEvent | None:
    """A `queue` event when a queued job's position moved since the last one this stream sent."""
    if follow.status != JobStatus.QUEUED.value:
        return None
    position = await state.fast_reads().queue_position(follow.owner, follow.job_id)
    if position is None or position == follow.queue_position:
        return None
    follow.queue_position = position
    return ServerSentEvent(json.dumps({"job_id": follow.job_id, "queue_position": position}), event="queue")


async def _stream(state: AppState, follow: _Follow, after: str, already_over: bool) -> AsyncIterator[ServerSentEvent]:
    settings = state.settings
    job_id = follow.job_id
    # XREAD blocks for up to a keep-alive interval, so the socket must wait longer than that
    # (redis-py's default read timeout would cut every quiet stream after a few seconds).
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_timeout_s,
                                     socket_timeout=settings.sse_keepalive_s + settings.redis_timeout_s)
    keepalive_ms = int(settings.sse_keepalive_s * 1000)
    try:
        yield ServerSentEvent(retry=keepalive_ms)
        while True:
            # a finished job: drain without waiting; a queued one: wake often enough to see it move up
            block = None if already_over else min(keepalive_ms, QUEUE_POLL_MS) \
                if follow.status == JobStatus.QUEUED.value else keepalive_ms
            reply = await client.xread({state.jobs.stream_key(job_id): after}, count=100, block=block)
            events = parse_stream_reply(reply)
            for event in events:
                after = event.id
                yield ServerSentEvent(json.dumps(follow.event(event.event, event.data)), event=event.event, id=event.id)
                if event.event == "status" and event.data.get("status") in TERMINAL_VALUES:
                    return
            if (queue := await _queue_event(state, follow)) is not None:
                yield queue
            if not events and already_over:
                return
            # quiet: the response's own pings keep the connection open
    finally:
        await client.aclose()
