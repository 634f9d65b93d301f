"""The result MP4 and the live playlist of a job: the same packets in both, the playlist closed only
on success, the MP4 uploaded in parts while the job renders, and all of it through a crash and resume."""
from __future__ import annotations

import av
import numpy as np
import pytest

from service.jobs.record import JobStatus
from service.storage.objects import LocalStorage, live_key, result_upload_key
from tests.worker.fakes import StubRenderer, store_job
from worker.render_job import Outcome, RetryRender, render_job


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def playlist_text(storage, job_id) -> str:
    return storage.get_bytes(live_key(job_id)).decode()


def assert_playlist_is_the_mp4(storage, job) -> None:
    playlist, video = storage.local_path(live_key(job.id)), storage.local_path(job.result.key)
    from_playlist, from_mp4 = decoded(playlist), decoded(video)
    assert len(from_playlist) == len(from_mp4) == job.result.frames
    assert all(np.array_equal(a, b) for a, b in zip(from_playlist, from_mp4)), "the same frames, exactly"


def test_the_playlist_closes_on_success_and_plays_the_mp4s_frames(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)  # 30 frames: 5 segments
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    done = jobs.get(job.id)
    text = playlist_text(storage, job.id)
    assert text.count("#EXTINF:") == 5 and text.endswith("#EXT-X-ENDLIST\n")
    assert_playlist_is_the_mp4(storage, done)


def test_a_crashed_run_leaves_the_playlist_open_and_the_resumed_mp4_equals_the_fragments(jobs, storage,
                                                                                          make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)
    with pytest.raises(RetryRender):  # the renderer crashes in segment 2 (1-based: the third)
        render_job(job.id, make_context(StubRenderer(crash_on_call=2)))
    text = playlist_text(storage, job.id)
    assert text.count("#EXTINF:") == 2 and "#EXT-X-ENDLIST" not in text, "the last segment does not close it"
    # the resumed run writes segments 0 and 1 again from their checkpoints: the same packets
    assert render_job(job.id, make_context()) is Outcome.SUCCEEDED
    assert playlist_text(storage, job.id).endswith("#EXT-X-ENDLIST\n")
    assert_playlist_is_the_mp4(storage, jobs.get(job.id))


def test_a_failed_job_leaves_its_playlist_open(jobs, storage, make_context):
    job = store_job(jobs, storage, seconds=2.0, fps=15)
    assert render_job(job.id, make_context(StubRenderer(crash_on_call=3), max_attempts=1)) is Outcome.FAILED
    assert jobs.get(job.id).status is JobStatus.FAILED
    text = playlist_text(storage, job.id)
    assert text.count("#EXTINF:") == 3 and "#EXT-X-ENDLIST" not in text


class Recording(LocalStorage):
    """Local storage that notes the multipart calls and when parts go up."""

    def __init__(self, root, jobs) -> None:
        super().__init__(root)
        self.jobs = jobs
        self.calls: list[tuple[str, int]] = []  # (call, segments recorded as done when it was made)
        self.job_id = ""

    def _note(self, call: str) -> None:
        done = sum(s.done for s in self.jobs.get(self.job_id).segments) if self.job_id else -1
        self.calls.append((call, done))

    def create_multipart(self, key, content_type="application/octet-stream"):
        self._note("create")
        return super().create_multipart(key, content_type)

    def upload_part(self, key, upload_id, number, data):
        self._note(f"part {number}")
        return super().upload_part(key, upload_id, number, data)

    def complete_multipart(self, key, upload_id, parts):
        self._note("complete")
        return super().complete_multipart(key, upload_id, parts)

    def abort_multipart(self, key, upload_id):
        self._note("abort")
        return super().abort_multipart(key, upload_id)


BIG = {"height": 384, "width": 384, "crf": 0}  # noisy stub frames, lossless: 6 s are about 12 MiB


def test_a_large_mp4_goes_up_in_parts_while_the_job_renders(jobs, tmp_path, make_context):
    storage = Recording(tmp_path / "storage", jobs)
    job = store_job(jobs, storage, seconds=6.0, fps=15, params=BIG)
    storage.job_id = job.id
    ctx = make_context()
    ctx.storage = storage
    assert render_job(job.id, ctx) is Outcome.SUCCEEDED
    done = jobs.get(job.id)
    names = [name for name, _ in storage.calls]
    assert names[0] == "create" and names[-2:] == ["part 1", "complete"] and "abort" not in names
    segments_total = len(done.segments)
    assert storage.calls[1][1] < segments_total and names.count("part 2") == 1, "while segments were rendering"
    assert done.result.size_bytes > 5 * 1024 * 1024 and not storage.exists(result_upload_key(job.id))
    assert_playlist_is_the_mp4(storage, done)


def test_a_crash_aborts_the_upload_and_the_resumed_run_starts_a_new_one(jobs, tmp_path, make_context):
    storage = Recording(tmp_path / "storage", jobs)
    job = store_job(jobs, storage, seconds=6.0, fps=15, params=BIG)
    storage.job_id = job.id
    crashing = make_context(StubRenderer(crash_on_call=9))
    crashing.storage = storage
    with pytest.raises(RetryRender):
        render_job(job.id, crashing)
    names = [name for name, _ in storage.calls]
    assert names[0] == "create" and names[-1] == "abort", "no orphan parts"
    assert not any((tmp_path / "storage" / ".multipart").iterdir())
    storage.calls.clear()
    resumed = make_context()
    resumed.storage = storage
    assert render_job(job.id, resumed) is Outcome.SUCCEEDED
    names = [name for name, _ in storage.calls]
    assert names[0] == "create" and names[-1] == "complete"
    assert_playlist_is_the_mp4(storage, jobs.get(job.id))
