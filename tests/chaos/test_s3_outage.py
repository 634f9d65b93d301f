"""Promise 6: object storage going away while a worker stores segments and the result (SeaweedFS
killed, then started again on the same ports and data): the uploads are retried with backoff, the
job completes, and the stored MP4's sha256 is the one in the job record."""
from __future__ import annotations

import hashlib

import pytest

from tests.chaos.scenario import TERMINAL, eventually, segments_done, submit, wait_for_status

pytestmark = pytest.mark.chaos_slow
DOWN_S = 8.0
SECONDS, FRAMES, SEGMENTS = 4.0, 60, 9


def test_uploads_survive_an_s3_outage_and_the_stored_video_matches_its_hash(chaos, figures):
    with chaos.render_workers(1) as (worker,), chaos.client() as client:
        job_id = submit(client, seconds=SECONDS)
        eventually(lambda: segments_done(client.get(f"/jobs/{job_id}").json()), 120, "a first finished segment")
        down_s = chaos.restart_s3(DOWN_S)
        job = wait_for_status(client, job_id, TERMINAL, timeout_s=300)
        video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
        log = worker.text()
    stored = chaos.s3.client().get_object(Bucket=chaos.bucket, Key=f"jobs/{job_id}/result.mp4")["Body"].read()

    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["frames"] == FRAMES
    assert hashlib.sha256(stored).hexdigest() == job["result"]["sha256"] == hashlib.sha256(video.content).hexdigest()
    retries = log.count("object storage unavailable")
    assert retries >= 1, "the outage was met by the uploads"
    assert job["runs"] == 1, "the storage outage was ridden out within the run"
    attempts = [s["attempts"] for s in job["segments"]]
    assert attempts == [1] * SEGMENTS
    figures.record(s3_down_s=down_s, upload_retries=retries, runs=job["runs"], segments_rerendered=0,
                   sha256_match=True, size_bytes=len(stored))
