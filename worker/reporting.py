"""The renderer's callbacks -> the job record, its event stream, segment checkpoints and webhooks."""
from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

from model.longvideo.chain import FinishedSegment
from model.longvideo.progress import Progress
from service.jobs.store import JobStore
from service.storage.objects import Storage, live_key
from service.storage.progressive import ProgressiveUpload
from service.webhooks.outbox import WebhookOutbox
from worker import stopping
from worker.lease import Heartbeat
from worker.live_playlist import LivePlaylist
from worker.segment_store import SegmentCheckpoints


class JobReporter:
    def __init__(self, job_id: str, *, jobs: JobStore, outbox: WebhookOutbox, worker: str,
                 checkpoints: SegmentCheckpoints, heartbeat: Heartbeat, fps: Fraction, segments_total: int,
                 progress_interval_s: float = 0.5, presign_ttl_s: int = 3600,
                 result_upload: ProgressiveUpload | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id = job_id
        self.jobs = jobs
        self.outbox = outbox
        self.worker = worker
        self.checkpoints = checkpoints
        self.heartbeat = heartbeat
        self.fps = fps
        self.segments_total = segments_total
        self.progress_interval_s = progress_interval_s
        self.presign_ttl_s = presign_ttl_s
        self.clock = clock
        self.live = LivePlaylist(checkpoints.storage, job_id, fps)  # progressive playback (HLS)
        self.result_upload = result_upload  # the result MP4, uploaded in parts as it grows
        self._last_progress: float | None = None
        self._segment_started_at = clock()

    def should_cancel(self) -> bool:
        """Checked between denoising steps: a lost lease stops at once (LeaseLost), so does a worker
        shutdown (WorkerStopping); a cancel request ends the render with RenderCancelled (raised by
        the renderer)."""
        self.heartbeat.check()
        stopping.check()
        return self.jobs.cancel_requested(self.job_id)

    def resumed_at(self, start: int) -> None:
        """Segments 0..start-1 are in storage. Record as done any the previous run stored but died
        before recording, so the job record agrees with what the resumed run skips."""
        job = self.jobs.get(self.job_id)
        for entry in job.segments:
            if entry.index < start and not entry.done:
                self.jobs.segment_finished(self.job_id, entry.index, 0.0)

    def segment_started(self, index: int) -> None:
        self._segment_started_at = self.clock()
        self.jobs.segment_started(self.job_id, index, self.worker)

    def progress(self, progress: Progress) -> None:
        """Per denoising step; recorded at most every `progress_interval_s`, and always at the end
        of a segment, so the stream is informative without a Redis write per step."""
        now = self.clock()
        last_step = progress.step >= progress.steps
        if not last_step and self._last_progress is not None and now - self._last_progress < self.progress_interval_s:
            return
        self._last_progress = now
        self.jobs.update_progress(self.job_id, segment=progress.segment - 1, segments_total=progress.segments,
                                  step=progress.step, steps_total=progress.steps,
                                  frames_done=progress.frames_done, frames_total=progress.frames_total)
        self.outbox.emit(self.jobs.get(self.job_id), "job.progress")

    def segment_done(self, finished: FinishedSegment) -> None:
        """Publish the segment's fragment (before the checkpoint: a stored segment has its fragment, and a
        segment rendered again after a crash is published again), checkpoint it, record it, count an
        attempt at the next one, and upload the result MP4's finished parts."""
        self.heartbeat.check()
        index = finished.segment.index
        if finished.encoded is not None:
            self.live.publish(index, finished.encoded)
        self.checkpoints.save(finished, self.fps)
        self.jobs.segment_finished(self.job_id, index, round(self.clock() - self._segment_started_at, 3))
        self.outbox.emit(self.jobs.get(self.job_id), "job.segment_completed",
                         extra={"live": live_links(self.checkpoints.storage, self.job_id, index, self.presign_ttl_s)})
        if index + 1 < self.segments_total:
            self.segment_started(index + 1)
        if self.result_upload is not None:
            self.result_upload.advance()


def live_links(storage: Storage, job_id: str, index: int, presign_ttl_s: int) -> dict[str, str | int]:
    """The `live` object of a job.segment_completed webhook. The playlist is only served rewritten by
    the API (service/api/routes/live.py), whose address the worker does not know: its path, plus
    this segment's fragment and the init section as presigned URLs (API paths with local storage)."""
    def url(name: str) -> str:
        return storage.presigned_url(live_key(job_id, name), presign_ttl_s) or f"/jobs/{job_id}/live/{name}"

    return {"playlist": f"/jobs/{job_id}/live.m3u8", "segment": index,
            "init_url": url("init.mp4"), "fragment_url": url(f"{index:04d}.m4s")}
