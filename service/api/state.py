"""What the request handlers share: built once per app from the settings."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Request

from service.api.idempotency import IdempotencyStore
from service.inputs.checks import Limits
from service.jobs.fair_queue import FairQueue
from service.jobs.key_limits import KeyLimits, KeyLimitStore
from service.jobs.owners import key_owner
from service.jobs.queue import RENDER_QUEUE, broker_lists, enqueue_webhook, make_celery
from service.jobs.status_read import FastReads
from service.jobs.store import JobStore
from service.settings import ApiSettings
from service.storage.objects import Storage, make_storage
from service.webhooks.outbox import WebhookOutbox


@dataclass
class AppState:
    settings: ApiSettings
    jobs: JobStore
    idempotency: IdempotencyStore
    storage: Storage
    celery: Celery
    outbox: WebhookOutbox  # the API sends one event itself: job.canceled for a job canceled while queued
    key_limits: KeyLimitStore
    fair: FairQueue
    key_owners: frozenset[str] = frozenset()  # sha256 of each configured API key, hashed once
    _fast: tuple[asyncio.AbstractEventLoop, FastReads] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> AppState:
        jobs = JobStore.from_url(settings.redis_url, settings.redis_timeout_s,
                                 retention_s=settings.job_retention_s)
        celery = make_celery(settings.celery_broker_url, settings.enqueue_timeout_s)
        return cls(settings=settings, jobs=jobs,
                   idempotency=IdempotencyStore(jobs.redis, settings.idempotency_ttl_s),
                   storage=make_storage(settings), celery=celery,
                   outbox=WebhookOutbox(jobs.redis, lambda event_id: enqueue_webhook(celery, event_id),
                                        prefix=jobs.prefix),
                   key_limits=KeyLimitStore(jobs.redis, KeyLimits.from_settings(settings), jobs.prefix),
                   fair=FairQueue(jobs.redis, jobs.prefix),
                   key_owners=frozenset(key_owner(key.get_secret_value()) for key in settings.api_keys))

    def fast_reads(self) -> FastReads:
        """The asyncio Redis client of the request path, one per event loop (its connections
        belong to the loop that opened them; test clients may run several loops in turn)."""
        loop = asyncio.get_running_loop()
        if self._fast is None or self._fast[0] is not loop:
            s = self.settings
            # a burst of requests waits for a free connection (up to the Redis timeout) instead of
            # failing once the pool's 100 are in use
            client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
                s.redis_url, max_connections=100, timeout=s.redis_timeout_s, socket_timeout=s.redis_timeout_s,
                socket_connect_timeout=s.redis_timeout_s))
            # the render queue's messages count in a queue position only when the broker is this Redis
            lists = tuple(broker_lists(RENDER_QUEUE)) if s.celery_broker_url == s.redis_url else ()
            self._fast = (loop, FastReads(client, self.key_limits.defaults, self.jobs.prefix, lists))
        return self._fast[1]

    async def close_fast_reads(self) -> None:
        if self._fast is not None and self._fast[0] is asyncio.get_running_loop():
            await self._fast[1].close()
        self._fast = None

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(max_image_pixels=s.max_image_pixels, max_video_side=s.max_video_side,
                      max_video_frames=s.max_video_frames, max_video_duration_s=s.max_video_duration_s,
                      max_json_bytes=s.max_json_bytes, max_json_depth=s.max_json_depth)


def app_state(request: Request) -> AppState:
    return request.app.state.services


State = Annotated[AppState, Depends(app_state)]
