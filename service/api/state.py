"""What the request handlers share: built once per app from the settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from service.api.idempotency import IdempotencyStore
from service.inputs.checks import Limits
from service.jobs.queue import enqueue_webhook, make_celery
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

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> AppState:
        jobs = JobStore.from_url(settings.redis_url, settings.redis_timeout_s,
                                 retention_s=settings.job_retention_s)
        celery = make_celery(settings.celery_broker_url, settings.enqueue_timeout_s)
        return cls(settings=settings, jobs=jobs,
                   idempotency=IdempotencyStore(jobs.redis, settings.idempotency_ttl_s),
                   storage=make_storage(settings), celery=celery,
                   outbox=WebhookOutbox(jobs.redis, lambda event_id: enqueue_webhook(celery, event_id),
                                        prefix=jobs.prefix))

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(max_image_pixels=s.max_image_pixels, max_video_side=s.max_video_side,
                      max_video_frames=s.max_video_frames, max_video_duration_s=s.max_video_duration_s,
                      max_json_bytes=s.max_json_bytes, max_json_depth=s.max_json_depth)


def app_state(request: Request) -> AppState:
    return request.app.state.services


State = Annotated[AppState, Depends(app_state)]
