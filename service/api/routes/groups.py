"""GET /groups/{id}: the jobs of one POST /animate/batch, their states and links."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.api.auth import Owner
from service.api.problems import Problem, problem_responses
from service.api.routes.batch import group_view
from service.api.state import State
from service.jobs.groups import GroupNotFound, GroupStore, summary
from service.jobs.views import GroupView
from service.storage.objects import is_job_id

router = APIRouter(tags=["jobs"])


@router.get("/groups/{group_id}", name="get_group",
            responses={200: {"model": GroupView, "description": "the group: status (running | completed), counts "
                                                                "by state, each member's status, result or error"},
                       **problem_responses(401, 404, 503)})
def get_group(group_id: str, request: Request, owner: Owner, state: State) -> JSONResponse:
    """The members of a batch in the order of its references; `completed` once every one is final."""
    store = GroupStore(state.jobs)
    try:
        group = store.get(group_id) if is_job_id(group_id) else None
    except GroupNotFound:
        group = None
    if group is None or group.owner != owner:
        raise Problem(404, "not-found", f"no group {group_id!r} for this API key")
    return JSONResponse(group_view(request, summary(group, store.members(group))))
