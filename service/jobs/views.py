"""The documented shapes of what GET /jobs/{id} and POST /jobs/{id}/cancel answer.

They describe `Job.public()` plus the links, for the OpenAPI document; the routes still build the
body with `job_view` (no second validation per request). `extra="forbid"` makes the schema say
"nothing else", so a field added to the record but not here fails tests/service/test_job_views.py
and the schemathesis response checks instead of drifting silently.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.params import RenderParams
from service.jobs.record import (
    JobError,
    JobStatus,
    ModelInfo,
    Progress,
    RerenderOrigin,
    SegmentEntry,
    VideoFacts,
    Webhook,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobLinks(_Strict):
    self: str
    events: str = Field(description="Server-Sent Events of this job")
    cancel: str
    video: str = Field(description="the MP4 once the job succeeded")


class ResultView(VideoFacts, _Strict):
    url: str | None = Field(description="presigned object-storage URL, or this API's /jobs/{id}/video")
    manifest_url: str | None = Field(None, description="GET /jobs/{id}/manifest: what produced the video")


class JobView(_Strict):
    id: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    params: RenderParams
    inputs: list[str] = Field(description="names of the inputs sent")
    webhook: Webhook | None
    progress: Progress
    segments: list[SegmentEntry]
    result: ResultView | None
    error: JobError | None
    cancel_requested: bool
    runs: int
    handbacks: int
    model: ModelInfo | None
    expires_at: datetime | None = Field(description="when a finished job's record is deleted")
    rerender_of: RerenderOrigin | None = None
    group_id: str | None = None
    queue_position: int | None = Field(
        None, description="GET /jobs/{id} of a queued job: how many jobs start before it, in the fair order "
                          "across API keys (0: it is next); null once it is handed to a worker")
    live_url: str | None = Field(
        None, description="GET /jobs/{id}/live.m3u8, the HLS playlist of the finished segments (progressive "
                          "playback); present once a segment is finished")
    links: JobLinks


class JobAccepted(_Strict):
    """202 of POST /animate and POST /jobs/{id}/rerender (and each job of a batch)."""
    job_id: str
    status: JobStatus
    links: JobLinks


class GroupLinks(_Strict):
    self: str


class BatchAccepted(_Strict):
    """202 of POST /animate/batch: the jobs in the order of the references."""
    group_id: str
    status: JobStatus
    jobs: list[JobAccepted]
    links: GroupLinks


class GroupMember(_Strict):
    job_id: str
    status: str = Field(description="the job's status, or `expired` once its record is deleted")
    result: dict[str, Any] | None = Field(None, description="frames, fps, duration_s, sha256 of a succeeded job")
    error: JobError | None = None
    links: JobLinks


class GroupView(_Strict):
    """GET /groups/{id} (service/jobs/groups.py `summary` plus links)."""
    group_id: str
    status: str = Field(description="`running` until every member is final, then `completed`")
    created_at: datetime
    completed_at: datetime | None
    total: int
    counts: dict[str, int] = Field(description="members by status")
    jobs: list[GroupMember]
    links: GroupLinks
