"""Groups: the jobs of one POST /animate/batch (one motion, several references).

A group is one JSON record in Redis (`{prefix}:group:{id}`): its owner, its members in the order of
the references, and the batch's webhook. Its state is not stored but read off the members, so no
transition of a member has to update it. A group is complete when every member is final; whoever
finishes the last member (a worker, or the API canceling a queued job) then records the one
`group.completed` webhook event, whose terminal claim in the outbox makes it happen once.

The record expires `GROUP_GRACE_S` after the jobs' retention, counted from its creation, so it
outlives members that finish within that grace.
"""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any, Protocol

import redis
from pydantic import BaseModel, Field

from service.jobs.record import Job, Webhook, utcnow
from service.jobs.store import JobNotFound, JobStore

log = logging.getLogger(__name__)

GROUP_GRACE_S = 30 * 24 * 3600
GROUP_COMPLETED = "group.completed"


class GroupNotFound(KeyError):
    """No group with that id."""


class Group(BaseModel):
    id: str
    owner: str
    created_at: datetime = Field(default_factory=utcnow)
    job_ids: list[str]
    webhook: Webhook | None = None


class GroupOutbox(Protocol):
    """What service.webhooks.outbox.WebhookOutbox offers for group events (no import: rooms)."""

    def emit_group(self, group_id: str, webhook: Webhook, event_type: str, data: dict[str, Any]) -> str | None: ...


class GroupStore:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def _key(self, group_id: str) -> str:
        return f"{self.jobs.prefix}:group:{group_id}"

    def create(self, group: Group) -> Group:
        ttl = int(self.jobs.retention_s) + GROUP_GRACE_S
        if not self.jobs.redis.set(self._key(group.id), group.model_dump_json(), nx=True, ex=ttl):
            raise ValueError(f"group {group.id} already exists")
        return group

    def get(self, group_id: str) -> Group:
        raw = self.jobs.redis.get(self._key(group_id))
        if raw is None:
            raise GroupNotFound(group_id)
        return Group.model_validate_json(raw)

    def members(self, group: Group) -> list[Job | None]:
        """The member jobs in order; None for one whose record has expired."""
        out: list[Job | None] = []
        for job_id in group.job_ids:
            try:
                out.append(self.jobs.get(job_id))
            except JobNotFound:
                out.append(None)
        return out


def summary(group: Group, members: list[Job | None]) -> dict[str, Any]:
    """What GET /groups/{id} and the group.completed event say (the API adds links and URLs)."""
    statuses = [job.status.value if job else "expired" for job in members]
    counts = Counter(statuses)
    complete = all(job is None or job.status.terminal for job in members)
    finished = [job.finished_at for job in members if job is not None and job.finished_at is not None]
    jobs = []
    for job_id, job, status in zip(group.job_ids, members, statuses, strict=True):
        entry: dict[str, Any] = {"job_id": job_id, "status": status}
        if job is not None and job.error is not None:
            entry["error"] = job.error.model_dump()
        if job is not None and job.result is not None:
            entry["result"] = job.result.model_dump(include={"frames", "fps", "duration_s", "sha256"})
        jobs.append(entry)
    return {"group_id": group.id, "status": "completed" if complete else "running",
            "created_at": group.created_at.isoformat(),
            "completed_at": max(finished).isoformat() if complete and finished else None,
            "total": len(members), "counts": dict(sorted(counts.items())), "jobs": jobs}


def announce_group_if_complete(jobs: JobStore, outbox: GroupOutbox, job: Job) -> str | None:
    """Called after `job` reached a final state: if it was its group's last, record group.completed
    (at most once, however many callers get here). Returns the event id when this call sent it."""
    if job.group_id is None or not job.status.terminal:
        return None
    store = GroupStore(jobs)
    try:
        group = store.get(job.group_id)
        members = store.members(group)
        if group.webhook is None or not all(member is None or member.status.terminal for member in members):
            return None
        return outbox.emit_group(group.id, group.webhook, GROUP_COMPLETED, summary(group, members))
    except GroupNotFound:
        return None
    except redis.RedisError as exc:  # the member is final either way; only the group's event is lost
        log.error("group %s: could not record %s: %s", job.group_id, GROUP_COMPLETED, exc)
        return None
