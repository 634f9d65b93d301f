"""GET /models: the models the render workers hold now (as their processes announce them)."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service.api.problems import problem_responses
from service.api.state import State
from service.jobs.models import ModelsSeen

router = APIRouter(tags=["health"])


@router.get("/models", responses=problem_responses(503))
async def models(state: State) -> dict[str, list[dict]]:
    """Each model a render worker announced in the last few minutes: `name`, `untrained` (the tiny
    random-weight model, whose videos show noise) and `last_seen` (Unix time). No key needed: it
    names models, nothing of anyone's; the web page labels an untrained model before any job runs."""
    seen = ModelsSeen(state.jobs.redis, state.jobs.prefix)
    return {"models": await run_in_threadpool(seen.current)}
