"""The FastAPI application factory. Importing this module never imports torch."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.api import problems
from service.api.bodylimit import BodyLimitMiddleware
from service.api.routes import (
    animate,
    batch,
    events,
    groups,
    health,
    jobs,
    live,
    manifest,
    models,
    preflight,
    rerender,
    web,
)
from service.api.state import AppState
from service.preflight.estimate import check_classes
from service.settings import ApiSettings

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    check_classes(settings.worker_classes)  # refuse to start rather than fail every submission
    services = AppState.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.storage == "s3" and settings.s3_create_bucket:
            try:
                services.storage.ensure_bucket()
            except Exception as exc:  # noqa: BLE001  (storage may come up later; /readyz reports it meanwhile
                log.warning("could not create bucket %s: %s", settings.s3_bucket, exc)
        yield
        services.jobs.redis.close()
        await services.close_fast_reads()

    app = FastAPI(title="UniAnimate service", version="0.1.0", lifespan=lifespan,
                  description="Animate a person in a reference image to follow a pose sequence. "
                              "Errors are RFC 9457 problem+json; see docs/api.md.")
    app.state.services = services
    problems.install(app)
    for module in (animate, preflight, jobs, events, health, models, manifest, live, web, batch, rerender,
                   groups):
        app.include_router(module.router)
    app.mount("/web", StaticFiles(directory=web.WEB_DIR), name="web")  # the page's scripts and styles
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    return app
