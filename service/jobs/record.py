"""The job record as stored in Redis (JSON) and shown by GET /jobs/{id}."""
from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from service.jobs.params import RenderParams


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

# Every legal move. running -> running is a resume: a task redelivered after its worker died
# starts the same job again and continues after the last finished segment.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                                  JobStatus.CANCELED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class Progress(BaseModel):
    segment: int = Field(0, description="index (0-based) of the segment being rendered")
    segments_total: int = 0
    step: int = Field(0, description="denoising steps done in this segment")
    steps_total: int = 0
    frames_done: int = 0
    frames_total: int = 0
    fraction: float = Field(0.0, ge=0.0, le=1.0)
    eta_s: float | None = Field(None, description="estimated seconds left; null until measurable")


class SegmentEntry(BaseModel):
    index: int
    attempts: int = 0
    worker: str | None = None
    done: bool = False
    seconds: float | None = Field(None, description="render time of the attempt that finished it")


class VideoFacts(BaseModel):
    """What a finished job's MP4 is; the record adds where it is stored, the API where to fetch it."""
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    size_bytes: int
    sha256: str


class Result(VideoFacts):
    key: str = Field(description="storage key of the MP4; the API turns it into `url`")
    manifest_key: str | None = Field(None, description="storage key of manifest.json; the API links it as "
                                                       "`manifest_url` (None: a job from before manifests)")


class JobError(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_input, out_of_memory, internal")
    message: str


class Webhook(BaseModel):
    url: str
    events: list[str] | None = Field(None, description="event types to send; null = every event")


class ModelInfo(BaseModel):
    name: str
    untrained: bool = Field(description="true for the tiny random-weight model: output is not meaningful")


class RerenderOrigin(BaseModel):
    """A job made by POST /jobs/{id}/rerender: segments 0..from_segment-1 are its parent's (copied
    into its own storage at submission), the rest are rendered with its own seed."""
    parent_id: str
    from_segment: int = Field(ge=0)
    # the seed plan (model.longvideo.chain.SamplingOptions): segment seeds derive from `base_seed`,
    # and from each change's seed from its segment on; the last change is (from_segment, params.seed)
    base_seed: int
    seed_changes: list[tuple[int, int]]


class Job(BaseModel):
    id: str
    owner: str = Field(description="sha256 of the API key that made the job ('anonymous' without auth)")
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: RenderParams
    inputs: dict[str, str] = Field(description="input name -> storage key")
    webhook: Webhook | None = None
    progress: Progress = Field(default_factory=Progress)
    segments: list[SegmentEntry] = Field(default_factory=list)
    result: Result | None = None
    error: JobError | None = None
    cancel_requested: bool = False
    runs: int = Field(0, description="how many times a worker started this job")
    handbacks: int = Field(0, description="runs that ended because their worker shut down and handed the job "
                                          "back; they do not count against the attempt limit")
    worker: str | None = None
    model: ModelInfo | None = None
    expires_at: datetime | None = Field(None, description="when the record of a finished job is deleted "
                                                          "(UNIANIMATE_JOB_RETENTION_S after it ended)")
    # seconds a finished job is kept: fixed at submission by the API's settings, so a worker that
    # finishes the job applies the same retention without reading the API's settings
    retention_s: int | None = None
    # where the current run started, for the ETA (a resumed run starts part way through)
    run_started_at: datetime | None = None
    run_start_fraction: float = 0.0
    # issue 15: studio features (re-render from a segment, batches of references)
    rerender_of: RerenderOrigin | None = None
    group_id: str | None = Field(None, description="the POST /animate/batch group this job belongs to")

    def public(self, video_url: str | None = None, manifest_url: str | None = None) -> dict[str, Any]:
        """The record as clients see it: no owner, no storage keys, no bookkeeping."""
        return public_view(self.model_dump(mode="json"), video_url, manifest_url)


PRIVATE_FIELDS = frozenset({"owner", "run_started_at", "run_start_fraction", "worker", "retention_s"})


def public_view(doc: dict[str, Any], video_url: str | None = None,
                manifest_url: str | None = None) -> dict[str, Any]:
    """A record's JSON document (as stored, or `model_dump(mode="json")`) as clients see it.

    GET /jobs/{id} calls this on the stored document without validating it into a Job (that
    validation was most of a status read's cost); `is_current` says when the document may be
    used so (it was written by this version's model)."""
    body = {name: value for name, value in doc.items() if name not in PRIVATE_FIELDS}
    body["inputs"] = sorted(doc["inputs"])
    if body["result"] is not None:
        result = body["result"] = dict(body["result"])
        result.pop("key")
        result["url"] = video_url
        if result.pop("manifest_key", None) is not None:
            result["manifest_url"] = manifest_url
    return body


def is_current(doc: dict[str, Any]) -> bool:
    """True when the stored document has every field this version's Job (and its progress) has:
    a record written before a field was added must be validated to get that field's default."""
    return (doc.keys() >= _JOB_FIELDS and isinstance(doc.get("progress"), dict)
            and doc["progress"].keys() >= _PROGRESS_FIELDS and isinstance(doc.get("params"), dict)
            and doc["params"].keys() >= _PARAMS_FIELDS)


_JOB_FIELDS = frozenset(Job.model_fields)
_PROGRESS_FIELDS = frozenset(Progress.model_fields)
_PARAMS_FIELDS = frozenset(RenderParams.model_fields)
