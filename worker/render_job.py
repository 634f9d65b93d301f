"""One render job, from the queued record to the uploaded MP4 (what the `unianimate.render` task runs).

    take the lease -> count the run -> fetch inputs -> poses -> render segment by segment
    (checkpoint + progress + webhooks after each; with `overlap_segments`, segment k's are done in a
    background thread while k + 1 denoises, and their errors end the run as they would serially)
    -> upload result.mp4 (in parts while it grows) -> succeeded

Outcomes: bad input fails the job at once with {code, message}; a cancel request ends it
canceled; an unexpected error raises `RetryRender` so Celery runs the job again (it resumes
after the last stored segment) until `max_attempts` runs are used, then the job fails.
A worker that finds the lease held, or the job already finished, does nothing. A worker that
is shutting down stops at the next step and hands the job back (the caller enqueues it again).
Until the job is `running`, any failure (Redis unreachable, a queued job's lease still held)
raises `NotStarted`: the caller retries the message instead of acknowledging it.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded
from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential

from model.errors import RenderCancelled
from model.longvideo.chain import SamplingOptions
from model.longvideo.mp4 import partial_path
from model.longvideo.planner import plan_segments
from model.longvideo.protocol import SegmentRenderer
from model.longvideo.video import RenderOptions, render_video
from service.jobs.groups import announce_group_if_complete
from service.jobs.params import RenderParams
from service.jobs.record import Job, JobError, JobStatus, ModelInfo, RerenderOrigin, Result
from service.jobs.store import IllegalTransition, JobNotFound, JobStore
from service.storage.objects import (
    MIN_PART_BYTES,
    ObjectNotFound,
    Storage,
    StorageUnavailable,
    result_key,
    result_upload_key,
)
from service.storage.progressive import ProgressiveUpload
from service.webhooks.outbox import WebhookOutbox
from worker import stopping
from worker.job_inputs import load_motion
from worker.lease import Heartbeat, JobLease, LeaseLost
from worker.manifest import build_manifest, store_manifest
from worker.memory_fit import DoesNotFit, MemoryFit, is_out_of_memory
from worker.reporting import JobReporter
from worker.segment_store import SegmentCheckpoints
from worker.settings import WorkerSettings
from worker.sweeper import clear_requeue_claim

log = logging.getLogger(__name__)
T = TypeVar("T")

TERMINAL_EVENT_PATIENCE_S = 60.0  # how long a finished job keeps trying to record its terminal event


class Outcome(StrEnum):
    SKIPPED = "skipped"  # not ours to render: unknown id, finished, or another worker holds the lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    HANDED_BACK = "handed_back"  # the worker is shutting down: enqueue the job again


class RetryRender(Exception):
    """The run failed for a reason that may not happen again; run the job again later."""


class NotStarted(Exception):
    """The job could not be started (Redis unreachable, its lease still held by a run that did
    not start it); nothing about it changed. Run the message again later: acknowledging it
    would leave a queued job that no message names. `transient` is False for a failure that
    waiting will not cure (a bug, a damaged record): see `give_up_starting`."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class InvalidInput(ValueError):
    """An input cannot be rendered; the message is for the client."""


@dataclass
class WorkerContext:
    """Everything a render needs, built once per worker process."""
    settings: WorkerSettings
    jobs: JobStore
    storage: Storage
    renderer: SegmentRenderer
    outbox: WebhookOutbox
    name: str  # shown in the job record and its segment attempts
    extractor: Any = None  # a DWPoseExtractor when pose extraction is configured
    memory: MemoryFit | None = None  # the GPU memory budget the renders are planned for


def render_job(job_id: str, ctx: WorkerContext) -> Outcome:
    """Raises NotStarted when the job could not be started (run the message again later) and
    RetryRender when a run failed part way (likewise; it resumes)."""
    lease = _not_started_on_error(job_id, _take_lease, job_id, ctx)
    if isinstance(lease, Outcome):
        return lease
    try:
        with Heartbeat(lease) as heartbeat, stopping.rendering():
            started = _not_started_on_error(job_id, _start, job_id, ctx)
            if isinstance(started, Outcome):
                return started
            return _run(started, ctx, heartbeat)
    finally:
        _release(lease)
        ctx.outbox.forget(job_id)


def _not_started_on_error(job_id: str, step: Callable[..., T], *args: Any) -> T:
    """Until the job is `running`, a failure (Redis, storage, a bug) must not acknowledge the
    message: nothing else would ever send a queued job again."""
    try:
        return step(*args)
    except NotStarted:
        raise
    except Exception as exc:
        transient = isinstance(exc, (redis.RedisError, StorageUnavailable))
        raise NotStarted(f"job {job_id} could not be started: {type(exc).__name__}: {exc}",
                         transient=transient) from exc


def give_up_starting(job_id: str, ctx: WorkerContext, exc: NotStarted) -> Outcome:
    """A job that fails the same non-transient way before it starts, message retry after retry, is
    failed instead of retried forever; if even that fails (a record that cannot be read), its
    message is dropped with an error in the log."""
    log.error("job %s could not be started, again: %s; failing it", job_id, exc)
    try:
        return _fail(ctx, job_id, "internal_error", f"the job could not be started: {exc}")
    except Exception:
        log.exception("job %s cannot even be marked failed; its message is dropped", job_id)
        return Outcome.SKIPPED


def _take_lease(job_id: str, ctx: WorkerContext) -> JobLease | Outcome:
    try:
        job = ctx.jobs.get(job_id)
    except JobNotFound:  # a submission that was rolled back after the broker took the message
        log.warning("job %s does not exist: ignored", job_id)
        return Outcome.SKIPPED
    if job.status.terminal:
        return Outcome.SKIPPED
    if stopping.requested():
        return Outcome.HANDED_BACK
    lease = JobLease(ctx.jobs.redis, ctx.jobs.prefix, job_id, ctx.settings.lease_ttl_s)
    if lease.acquire():
        return lease
    if ctx.jobs.get(job_id).status is JobStatus.QUEUED:
        # another worker is starting it this instant, or one died between taking the lease and
        # starting the job: look again once that lease may have expired, instead of dropping it
        raise NotStarted(f"job {job_id} is queued and its lease is held; trying again later")
    log.info("job %s is being rendered by another worker: this copy does nothing", job_id)
    return Outcome.SKIPPED


def _release(lease: JobLease) -> None:
    try:
        lease.release()
    except redis.RedisError as exc:  # it expires on its own after its TTL
        log.warning("could not release the lease of job %s: %s", lease.job_id, exc)


def _start(job_id: str, ctx: WorkerContext) -> Job | Outcome:
    """With the lease held: the job moves to `running` (a new run), or ends here."""
    clear_requeue_claim(ctx.jobs, job_id)
    job = ctx.jobs.get(job_id)  # read again: it may have changed before we held the lease
    if job.status.terminal:
        return Outcome.SKIPPED
    if job.cancel_requested:  # asked while its last worker was dying
        return _finish(ctx, job_id, JobStatus.CANCELED)
    if job.runs - job.handbacks >= ctx.settings.max_attempts:
        return _fail(ctx, job_id, "too_many_attempts",
                     f"the job was started {job.runs} times and its worker stopped each time (crash, out of "
                     "memory or a killed process); giving up")
    model = ModelInfo(name=ctx.renderer.label, untrained=ctx.renderer.untrained)
    try:
        job = ctx.jobs.transition(job_id, JobStatus.RUNNING, worker=ctx.name, model=model)
    except IllegalTransition:  # canceled while we took the lease
        return Outcome.SKIPPED
    log.info("job %s run %d on %s (%s)", job_id, job.runs, ctx.name, model.name)
    return job


def _run(job: Job, ctx: WorkerContext, heartbeat: Heartbeat) -> Outcome:
    job_id = job.id
    if job.runs == 1:  # `runs` counts the moves to running; a resumed or handed-back job has more
        _announce_start(ctx, job)
    try:
        result = _render(job, ctx, heartbeat)
    except LeaseLost:
        log.error("job %s: lease lost, leaving the job to its new worker", job_id)
        return Outcome.SKIPPED
    except stopping.WorkerStopping:
        ctx.jobs.hand_back(job_id)
        log.warning("job %s: the worker is shutting down; handed back after %d stored segment(s)", job_id,
                    sum(entry.done for entry in ctx.jobs.get(job_id).segments))
        return Outcome.HANDED_BACK
    except RenderCancelled:
        return _finish(ctx, job_id, JobStatus.CANCELED)
    except InvalidInput as exc:
        return _fail(ctx, job_id, "invalid_input", str(exc))
    except DoesNotFit as exc:
        return _fail(ctx, job_id, "out_of_memory", str(exc))
    except SoftTimeLimitExceeded:
        return _fail(ctx, job_id, "timeout", f"the job ran longer than {ctx.settings.soft_time_limit_s} s; "
                                             "render a shorter clip, fewer steps or a smaller size")
    except Exception as exc:
        if is_out_of_memory(exc) and not (ctx.memory and ctx.memory.after_out_of_memory()):
            # the same settings would run out of memory again: fail now, saying what to change
            return _fail(ctx, job_id, "out_of_memory", f"the GPU ran out of memory ({exc}); lower height/width "
                                                       "or segment_frames")
        if job.runs - job.handbacks >= ctx.settings.max_attempts:
            log.exception("job %s failed on its last run", job_id)
            return _fail(ctx, job_id, _error_code(exc), f"rendering failed after {job.runs} runs: "
                                                        f"{type(exc).__name__}: {exc}")
        log.exception("job %s run %d failed; it will run again", job_id, job.runs)
        raise RetryRender(f"job {job_id} run {job.runs}: {type(exc).__name__}: {exc}") from exc
    heartbeat.check()
    return _finish(ctx, job_id, JobStatus.SUCCEEDED, result=result)


def _render(job: Job, ctx: WorkerContext, heartbeat: Heartbeat) -> Result:
    params = job.params
    with tempfile.TemporaryDirectory(prefix=f"unianimate-{job.id[:8]}-") as tmp:
        files = _fetch_inputs(job, ctx.storage, Path(tmp))
        try:
            motion = load_motion(files, params, ctx.extractor)
            height, width = motion.frame_size  # the params', or the reference's aspect ratio (model/frame_size.py)
            params = params.model_copy(update={"height": height, "width": width})
            plan = plan_segments(len(motion.poses), params.segment_frames)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        chained = params.long_video_mode == "chain"
        checkpoints = SegmentCheckpoints(ctx.storage, job.id)
        resume = checkpoints.resume(len(plan)) if chained else None
        out = Path(tmp) / "result.mp4"
        upload = ProgressiveUpload(ctx.storage, result_key(job.id), partial_path(out), content_type="video/mp4",
                                   part_bytes=MIN_PART_BYTES,  # the smallest S3 allows: the least left at the end
                                   record_key=result_upload_key(job.id))
        upload.abort_stale()  # a resumed job writes and uploads its MP4 from the start
        reporter = JobReporter(job.id, jobs=ctx.jobs, outbox=ctx.outbox, worker=ctx.name, checkpoints=checkpoints,
                               heartbeat=heartbeat, fps=motion.fps, segments_total=len(plan) if chained else 1,
                               progress_interval_s=ctx.settings.progress_interval_s,
                               presign_ttl_s=ctx.settings.presign_ttl_s, result_upload=upload)
        start = 0 if resume is None else resume.start_segment
        if resume is not None:  # a re-render's copied segments are not in its playlist yet
            resume = replace(resume, on_restored=reporter.live.publish_restored)
        if start:
            log.info("job %s resumes at segment %d of %d", job.id, start + 1, len(plan))
            reporter.resumed_at(start)
        reporter.segment_started(start)
        options = render_options(params, job.rerender_of)
        if ctx.memory is not None:  # raises DoesNotFit when no settings fit this GPU
            ctx.memory.apply(ctx.renderer, options.height, options.width, options.segment_frames)
        try:
            video = render_video(ctx.renderer, motion.reference_image, motion.ref_pose, motion.poses, out,
                                 fps=motion.fps, options=options, audio_source=motion.audio_source,
                                 on_progress=reporter.progress, should_cancel=reporter.should_cancel,
                                 on_segment_done=reporter.segment_done if chained else None, resume=resume,
                                 overlap=ctx.settings.overlap_segments)
            heartbeat.check()
            stored = upload.finish(out)  # most of it went up while rendering
        except BaseException:  # failed, canceled, handed back: no orphan parts
            upload.abort()
            raise
        result = Result(frames=video.frames, fps=float(video.fps), width=params.width, height=params.height,
                        duration_s=video.duration_s, size_bytes=stored.size_bytes, sha256=stored.sha256,
                        key=stored.key)
        manifest = build_manifest(job, renderer=ctx.renderer, settings=ctx.settings, options=options, motion=motion,
                                  plan=plan, files=files, audio=motion.audio_source is not None,
                                  video=result.model_dump())
        result = result.model_copy(update={"manifest_key": store_manifest(ctx.storage, manifest)})
        if chained:  # #EXT-X-ENDLIST only now: a failed job's playlist stays open
            reporter.live.close(len(plan))
        return result


def render_options(params: RenderParams, rerender_of: RerenderOrigin | None = None) -> RenderOptions:
    """A re-render's segment seeds follow its seed plan (segments before `from_segment` are its parent's)."""
    seeds = {"seed": params.seed or 0}
    if rerender_of is not None:
        seeds = {"seed": rerender_of.base_seed, "seed_changes": tuple(map(tuple, rerender_of.seed_changes))}
    sampling = SamplingOptions(**seeds, steps=params.steps, guidance_scale=params.guidance_scale,
                               noise_prior_t=params.noise_prior_t)
    return RenderOptions(height=params.height, width=params.width, sampling=sampling,
                         mode=params.long_video_mode, segment_frames=params.segment_frames, crf=params.crf)


def _fetch_inputs(job: Job, storage: Storage, folder: Path) -> dict[str, Path]:
    files = {}
    for name, key in job.inputs.items():
        path = folder / key.rsplit("/", 1)[-1]
        try:
            storage.get_file(key, path)
        except ObjectNotFound as exc:
            raise InvalidInput(f"{name}: the uploaded file is no longer in storage; submit the job again") from exc
        files[name] = path
    return files


def _error_code(exc: Exception) -> str:
    return "out_of_memory" if is_out_of_memory(exc) else "internal"


def _fail(ctx: WorkerContext, job_id: str, code: str, message: str) -> Outcome:
    log.warning("job %s failed: %s: %s", job_id, code, message)
    return _finish(ctx, job_id, JobStatus.FAILED, error=JobError(code=code, message=message))


def _finish(ctx: WorkerContext, job_id: str, status: JobStatus, *, result: Result | None = None,
            error: JobError | None = None) -> Outcome:
    """Record the terminal state, announce it (and its group's completion), and drop the segment
    checkpoints of a failed or canceled job (nothing resumes it). A succeeded job keeps them as long
    as the rest of its objects: POST /jobs/{id}/rerender copies them while the record exists
    (docs/api.md, "Re-render from a segment")."""
    job = ctx.jobs.transition(job_id, status, result=result, error=error)
    _announce_end(ctx, job, f"job.{status.value}")
    announce_group_if_complete(ctx.jobs, ctx.outbox, job)
    if status is not JobStatus.SUCCEEDED and not ctx.settings.keep_segments:
        try:
            SegmentCheckpoints(ctx.storage, job_id).delete()
        except StorageUnavailable as exc:  # the job is finished either way; leftovers are only space
            log.warning("job %s: could not delete its segment checkpoints: %s", job_id, exc)
    return Outcome(status.value)


def _announce_start(ctx: WorkerContext, job: Job) -> None:
    """`job.started` is worth a try, not a run of the job: a Redis blip here only loses the event."""
    try:
        ctx.outbox.emit(job, "job.started")
    except redis.RedisError as exc:
        log.warning("job %s: could not record its job.started webhook: %s", job.id, exc)


def _announce_end(ctx: WorkerContext, job: Job, event_type: str) -> None:
    """Record the terminal webhook event, riding out a Redis blip: the job is finished, so no later
    run would announce it. Recording is one atomic step with the terminal claim, so trying again
    never makes two (a step that ran but whose reply was lost finds its claim taken)."""
    retrying = Retrying(
        retry=retry_if_exception_type(redis.RedisError),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        stop=stop_before_delay(TERMINAL_EVENT_PATIENCE_S),
        before_sleep=lambda state: log.warning(
            "job %s: recording its %s webhook event failed (%s); trying again in %g s", job.id, event_type,
            state.outcome.exception(), state.upcoming_sleep),
        reraise=True,
    )
    try:
        retrying(ctx.outbox.emit, job, event_type)
    except redis.RedisError as exc:
        log.error("job %s is %s but its %s webhook event could not be recorded: %s", job.id,
                  job.status.value, event_type, exc)
