"""Job records in Redis, and the one function that changes a job's state.

Each job is one JSON document (`{prefix}:job:{id}`) changed only inside WATCH/MULTI
transactions, so concurrent writers (API cancel, worker progress) never lose an update.
Every change a client may want to follow is appended to a per-job Redis Stream
(`{prefix}:job:{id}:events`), which GET /jobs/{id}/events replays and tails. A live job's record
and stream never expire; when a job ends (the one transition function, whoever calls it: the API
or a worker) both expire `retention_s` later (UNIANIMATE_JOB_RETENTION_S, stamped into the record
at submission, so workers need not know the setting); Celery keeps no results of its own.
service.jobs.index counts jobs by state, and `{prefix}:metrics` holds the cluster-wide counters
the API exports to Prometheus.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from redis.exceptions import WatchError

from service.jobs.index import StateIndex, epoch_seconds
from service.jobs.owners import OwnerIndex
from service.jobs.params import RenderParams
from service.jobs.record import (
    TRANSITIONS,
    Job,
    JobError,
    JobStatus,
    ModelInfo,
    Progress,
    Result,
    SegmentEntry,
    Webhook,
    utcnow,
)

STREAM_MAXLEN = 10_000
DEFAULT_RETENTION_S = 7 * 24 * 3600  # service.settings.ApiSettings.job_retention_s
SEGMENT_SECONDS_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


class JobNotFound(KeyError):
    """No job with that id."""


class IllegalTransition(ValueError):
    """The job cannot move from its current state to the requested one (or is not running)."""


@dataclass(frozen=True)
class Event:
    """One entry of a job's event stream: `id` is the Redis stream id (also the SSE id)."""
    id: str
    event: str  # "status" | "progress" | "segment" | "cancel_requested"
    data: dict[str, Any]


Change = Callable[[Job], tuple[Job, list[tuple[str, dict[str, Any]]]]]


@dataclass(frozen=True)
class Admit:
    """What JobStore.create runs inside its transaction (see there)."""
    watch: tuple[str, ...]
    check: Callable[[Any], None]
    write: Callable[[Any], None]


class JobStore:
    def __init__(self, client: redis.Redis, prefix: str = "unianimate",
                 retention_s: int = DEFAULT_RETENTION_S) -> None:
        self.redis = client
        self.prefix = prefix
        self.retention_s = retention_s  # for jobs created through this store
        self.index = StateIndex(prefix)
        self.owners = OwnerIndex(prefix)  # per-key live jobs and GPU time (limits, fair order)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 5.0, prefix: str = "unianimate",
                 retention_s: int = DEFAULT_RETENTION_S) -> JobStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                      health_check_interval=30)
        return cls(client, prefix, retention_s)

    # keys --------------------------------------------------------------------------------
    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def stream_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    @property
    def metrics_key(self) -> str:
        return f"{self.prefix}:metrics"

    # create / read / delete ----------------------------------------------------------------
    def create(self, job_id: str, owner: str, params: RenderParams, inputs: dict[str, str],
               webhook: Webhook | None = None, *, admit: Admit | None = None,
               extra: dict[str, Any] | None = None) -> Job:
        """Record a new queued job. Raises ValueError if the id is taken.

        `admit` (the per-key limits and the fair queue, service.api.submit) runs inside the same
        transaction: its `check(pipe)` reads (and WATCHes) what it needs and may raise to refuse the
        job; its `write(pipe)` queues more writes. So a job is recorded and put in its key's waiting
        list together, or not at all, and two submissions cannot both pass a limit only one fits in."""
        job = Job(id=job_id, owner=owner, params=params, inputs=inputs, webhook=webhook,
                  retention_s=self.retention_s, **(extra or {}))  # extra: rerender_of, group_id
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, *(admit.watch if admit else ()))
                    if pipe.exists(key):
                        raise ValueError(f"job {job_id} already exists")
                    if admit:
                        admit.check(pipe)
                    pipe.multi()
                    pipe.set(key, job.model_dump_json())
                    self.index.add(pipe, job_id, job.status)
                    self.owners.add(pipe, owner, job_id, job.status)
                    self._append(pipe, job_id, "status", _status_data(job))
                    if admit:
                        admit.write(pipe)
                    pipe.execute()
                    return job
                except WatchError:
                    continue  # a watched count changed (or the id was taken: the next round says so)

    def get(self, job_id: str) -> Job:
        raw = self.redis.get(self._key(job_id))
        if raw is None:
            raise JobNotFound(job_id)
        return Job.model_validate_json(raw)

    def discard(self, job_id: str) -> None:
        """Remove a queued job that was never enqueued (rollback of a failed submission)."""
        def change(job: Job):
            if job.status is not JobStatus.QUEUED:
                raise IllegalTransition(f"job {job_id} is {job.status}; only a queued job can be discarded")
            return job, []
        self._mutate(job_id, change, delete=True)

    # the one state-transition function -------------------------------------------------------
    def transition(self, job_id: str, to: JobStatus, *, worker: str | None = None,
                   result: Result | None = None, error: JobError | None = None,
                   model: ModelInfo | None = None) -> Job:
        """Move a job to `to` if TRANSITIONS allows it; raise IllegalTransition otherwise.

        -> running needs `worker`; -> succeeded needs `result`; -> failed needs `error`.
        Sets the timestamps, appends a "status" event, and on leaving `running` adds the run's
        wall time to the GPU-seconds counter. Entering a final state sets `expires_at`: the record
        and its event stream are deleted then (see _write).
        """
        to = JobStatus(to)
        if to is JobStatus.RUNNING and not worker:
            raise ValueError("a job that starts running needs the worker's name")
        if to is JobStatus.SUCCEEDED and result is None:
            raise ValueError("a succeeded job needs its result")
        if to is JobStatus.FAILED and error is None:
            raise ValueError("a failed job needs an error {code, message}")
        extra: dict[str, float] = {}
        owner: list[str] = []

        def change(job: Job):
            if to not in TRANSITIONS[job.status]:
                raise IllegalTransition(f"job {job_id} cannot go from {job.status} to {to}")
            now = utcnow()
            updates: dict[str, Any] = {"status": to, "updated_at": now}
            if job.status is JobStatus.RUNNING and job.run_started_at is not None:
                extra["gpu_seconds"] = (now - job.run_started_at).total_seconds()
                owner.append(job.owner)
            if to is JobStatus.RUNNING:
                updates |= {"worker": worker, "runs": job.runs + 1, "started_at": job.started_at or now,
                            "run_started_at": now, "run_start_fraction": job.progress.fraction,
                            "model": model or job.model}
            if to.terminal:
                retention = timedelta(seconds=job.retention_s or self.retention_s)
                updates |= {"finished_at": now, "result": result, "error": error, "expires_at": now + retention,
                            "progress": job.progress.model_copy(update={"eta_s": None})}
                if to is JobStatus.SUCCEEDED:
                    updates["progress"] = job.progress.model_copy(update={"fraction": 1.0, "eta_s": 0.0})
            after = job.model_copy(update=updates)
            return after, [("status", _status_data(after))]

        def counters(pipe) -> None:
            if "gpu_seconds" in extra:
                pipe.hincrbyfloat(self.metrics_key, "gpu_seconds_total", extra["gpu_seconds"])
                self.owners.add_gpu_seconds(pipe, owner[-1], extra["gpu_seconds"])

        return self._mutate(job_id, change, after_write=counters)

    def request_cancel(self, job_id: str) -> Job:
        """Cancel: a queued job becomes canceled now; a running one gets the flag the worker
        polls between denoising steps; a finished job is returned unchanged."""
        job = self.get(job_id)
        if job.status is JobStatus.QUEUED:
            try:
                return self.transition(job_id, JobStatus.CANCELED)
            except IllegalTransition:
                job = self.get(job_id)  # a worker started it meanwhile: fall through to the flag
        if job.status is not JobStatus.RUNNING:
            return job

        def change(current: Job):
            if current.status is not JobStatus.RUNNING or current.cancel_requested:
                return current, []
            after = current.model_copy(update={"cancel_requested": True, "updated_at": utcnow()})
            return after, [("cancel_requested", {"job_id": job_id})]
        return self._mutate(job_id, change)

    def cancel_requested(self, job_id: str) -> bool:
        """What the worker checks between steps."""
        return self.get(job_id).cancel_requested

    # worker reports ----------------------------------------------------------------------------
    def update_progress(self, job_id: str, *, segment: int, segments_total: int, step: int,
                        steps_total: int, frames_done: int, frames_total: int) -> Progress:
        """Record where a running job is; computes `fraction` and `eta_s`. Appends "progress"."""
        def change(job: Job):
            _require_running(job)
            fraction = _fraction(segment, segments_total, step, steps_total)
            progress = Progress(segment=segment, segments_total=segments_total, step=step,
                                steps_total=steps_total, frames_done=frames_done,
                                frames_total=frames_total, fraction=fraction, eta_s=_eta(job, fraction))
            after = job.model_copy(update={"progress": progress, "updated_at": utcnow()})
            return after, [("progress", progress.model_dump(mode="json"))]
        return self._mutate(job_id, change).progress

    def segment_started(self, job_id: str, index: int, worker: str) -> SegmentEntry:
        """Count an attempt at segment `index` by `worker`."""
        def change(job: Job):
            _require_running(job)
            entries = {entry.index: entry for entry in job.segments}
            entry = entries.get(index, SegmentEntry(index=index))
            entries[index] = entry.model_copy(update={"attempts": entry.attempts + 1, "worker": worker,
                                                      "done": False, "seconds": None})
            return job.model_copy(update={"segments": sorted(entries.values(), key=lambda e: e.index),
                                          "updated_at": utcnow()}), []
        job = self._mutate(job_id, change)
        return next(entry for entry in job.segments if entry.index == index)

    def segment_finished(self, job_id: str, index: int, seconds: float) -> SegmentEntry:
        """Mark segment `index` done (its files are in storage); appends a "segment" event."""
        def change(job: Job):
            _require_running(job)
            entries = [entry.model_copy(update={"done": True, "seconds": seconds})
                       if entry.index == index else entry for entry in job.segments]
            if not any(entry.index == index for entry in job.segments):
                raise IllegalTransition(f"segment {index} of job {job_id} was never started")
            after = job.model_copy(update={"segments": entries, "updated_at": utcnow()})
            data = {"index": index, "seconds": seconds, "segments_total": job.progress.segments_total}
            return after, [("segment", data)]

        def histogram(pipe) -> None:
            pipe.hincrbyfloat(self.metrics_key, "segment_seconds_sum", seconds)
            pipe.hincrby(self.metrics_key, "segment_seconds_count", 1)
            for bound in SEGMENT_SECONDS_BUCKETS:
                if seconds <= bound:
                    pipe.hincrby(self.metrics_key, f"segment_seconds_bucket:{bound}", 1)

        job = self._mutate(job_id, change, after_write=histogram)
        return next(entry for entry in job.segments if entry.index == index)

    def hand_back(self, job_id: str) -> Job:
        """A running job whose worker is shutting down goes back to the queue as it is (still
        `running`, resumed by the next worker); the run does not count against the attempt limit."""
        def change(job: Job):
            _require_running(job)
            return job.model_copy(update={"handbacks": job.handbacks + 1, "updated_at": utcnow()}), []
        return self._mutate(job_id, change)

    # events and counts ---------------------------------------------------------------------------
    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 100) -> list[Event]:
        """Events with ids greater than `after`; waits up to `block_ms` if there are none yet."""
        return parse_stream_reply(self.redis.xread({self.stream_key(job_id): after}, count=count,
                                                   block=block_ms))

    def counts_by_status(self) -> dict[JobStatus, int]:
        """Live jobs by state, and finished jobs whose records are still retained."""
        return self.index.counts(self.redis)

    def ids_with_status(self, status: JobStatus) -> list[str]:
        """Ids of the jobs currently in `status` (the sweeper looks for orphaned running jobs)."""
        return sorted(_text(member) for member in self.index.ids(self.redis, JobStatus(status)))

    def metric_counters(self) -> dict[str, float]:
        return {_text(k): float(v) for k, v in self.redis.hgetall(self.metrics_key).items()}

    # internals -----------------------------------------------------------------------------------
    def _write(self, pipe, before: Job, after: Job, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue the writes of one change. A finished job's record and stream get an absolute
        expiry (EXAT/EXPIREAT), so a later write to either cannot push its deletion back."""
        expires = epoch_seconds(after.expires_at.timestamp()) if after.expires_at else None
        pipe.set(self._key(after.id), after.model_dump_json(), exat=expires)
        if after.status is not before.status:
            self.index.move(pipe, after.id, before.status, after.status, expires)
            self.owners.move(pipe, after.owner, after.id, before.status, after.status)
        for name, data in events:
            self._append(pipe, after.id, name, data)
        if expires is not None:
            pipe.expireat(self.stream_key(after.id), expires)

    def _append(self, pipe, job_id: str, event: str, data: dict[str, Any]) -> None:
        pipe.xadd(self.stream_key(job_id), {"event": event, "data": json.dumps(data)},
                  maxlen=STREAM_MAXLEN, approximate=True)

    def _mutate(self, job_id: str, change: Change, *, delete: bool = False,
                after_write: Callable[[Any], None] | None = None) -> Job:
        """Read-modify-write one record atomically; retried when another writer got there first."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(job_id)
                    before = Job.model_validate_json(raw)
                    after, events = change(before)
                    pipe.multi()
                    if delete:
                        pipe.delete(key, self.stream_key(job_id))
                        self.index.remove(pipe, job_id, before.status)
                        self.owners.remove(pipe, before.owner, job_id, before.status)
                    else:
                        self._write(pipe, before, after, events)
                    if after_write:
                        after_write(pipe)
                    pipe.execute()
                    return after
                except WatchError:
                    continue


def parse_stream_reply(reply: Any) -> list[Event]:
    """XREAD's reply (sync or asyncio client, bytes or str) -> Events in stream order."""
    out: list[Event] = []
    for _stream, entries in reply or []:
        for entry_id, raw in entries:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            out.append(Event(_text(entry_id), fields["event"], json.loads(fields["data"])))
    return out


def _require_running(job: Job) -> None:
    if job.status is not JobStatus.RUNNING:
        raise IllegalTransition(f"job {job.id} is {job.status}, not running")


def _fraction(segment: int, segments_total: int, step: int, steps_total: int) -> float:
    if segments_total <= 0:
        return 0.0
    within = step / steps_total if steps_total > 0 else 0.0
    return max(0.0, min(1.0, (segment + within) / segments_total))


def _eta(job: Job, fraction: float) -> float | None:
    """Seconds left, extrapolating this run's speed (a resumed run started part way through)."""
    if job.run_started_at is None or fraction <= job.run_start_fraction:
        return None
    elapsed = (utcnow() - job.run_started_at).total_seconds()
    rate = (fraction - job.run_start_fraction) / max(elapsed, 1e-6)
    return round((1.0 - fraction) / rate, 1)


def _status_data(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {"job_id": job.id, "status": job.status.value}
    if job.error is not None:
        data["error"] = job.error.model_dump()
    if job.result is not None:
        data["result"] = job.result.model_dump(exclude={"key"})
    return data


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
