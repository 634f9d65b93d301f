"""Progressive playback on the real stack: during a 10-segment job, GET /jobs/{id}/live.m3u8 lists the
finished segments and its presigned fragments decode; after success the playlist is closed and its
frames are the MP4's."""
from __future__ import annotations

import io
import json
import re

import av
import httpx
import numpy as np
import pytest

from tests.integration.stack import wait_for_status
from tests.integration.test_end_to_end import submit

pytestmark = pytest.mark.integration

FPS = 15
# 30 pose frames in segments of 4 frames that share one frame with the segment before: 10 segments
SECONDS, SEGMENT_FRAMES, SEGMENTS = 2.0, 4, 10


def uris(playlist: str) -> tuple[str, list[str]]:
    """(the init section's URI, the fragment URIs in order)."""
    [init] = re.findall(r'^#EXT-X-MAP:URI="([^"]+)"', playlist, re.MULTILINE)
    return init, [line for line in playlist.splitlines() if line and not line.startswith("#")]


def decode(playlist: str) -> list[np.ndarray]:
    """Download the init section and every listed fragment from their presigned URLs (no API key)
    and decode them as one fMP4 stream; the frames as planar YUV arrays."""
    init, fragments = uris(playlist)
    data = b"".join(httpx.get(url, timeout=30).raise_for_status().content for url in [init, *fragments])
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray() for frame in container.decode(video=0)]


def mp4_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray() for frame in container.decode(video=0)]


def listed_frames(playlist: str) -> int:
    return round(sum(float(d) for d in re.findall(r"#EXTINF:([0-9.]+),", playlist)) * FPS)


def test_the_live_playlist_plays_while_the_job_renders_and_ends_as_the_mp4(stack):
    with stack.client() as client:
        job_id = submit(client, seconds=SECONDS, fps=FPS, params={"segment_frames": SEGMENT_FRAMES})
        assert client.get(f"/jobs/{job_id}/live.m3u8").status_code == 404  # nothing finished yet
        snapshot, status_then = None, None
        with client.stream("GET", f"/jobs/{job_id}/events", timeout=180) as stream:
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name == "segment" and snapshot is None:
                    event = json.loads(line.removeprefix("data: "))
                    live = client.get(event["live_url"])
                    assert live.status_code == 200, live.text
                    assert live.headers["cache-control"] == "no-store"
                    snapshot, status_then = live.text, client.get(f"/jobs/{job_id}").json()
                elif line.startswith("data: ") and name == "status" and json.loads(
                        line.removeprefix("data: "))["status"] in ("succeeded", "failed", "canceled"):
                    break
        job = wait_for_status(client, job_id, {"succeeded", "failed"})
        assert job["status"] == "succeeded", job["error"]
        assert len(job["segments"]) == SEGMENTS
        final = client.get(job["live_url"])
        video = client.get(f"/jobs/{job_id}/video", follow_redirects=True).raise_for_status().content

    # While running: the playlist lists the finished segments in order, is still open, and plays.
    assert status_then["status"] == "running" and status_then["live_url"].endswith(f"/jobs/{job_id}/live.m3u8")
    finished = sum(segment["done"] for segment in status_then["segments"])
    _, fragments = uris(snapshot)
    assert 1 <= len(fragments) <= finished < SEGMENTS
    assert [re.search(r"/live/(\d{4})\.m4s", url)[1] for url in fragments] == [
        f"{k:04d}" for k in range(len(fragments))]
    assert "#EXT-X-ENDLIST" not in snapshot
    early = decode(snapshot)
    assert len(early) == listed_frames(snapshot) > 0

    # After success: closed, every segment, and the MP4's frame count.
    assert final.status_code == 200 and final.text.rstrip().endswith("#EXT-X-ENDLIST")
    assert len(uris(final.text)[1]) == SEGMENTS
    played, delivered = decode(final.text), mp4_frames(video)
    assert len(played) == len(delivered) == job["result"]["frames"] == round(SECONDS * FPS)
    # The issue asks for the SAME frames as the final MP4. This holds once the worker builds the MP4 from
    # the fragments' own encoded packets (helper D's change to worker/live_playlist.py / render_job.py);
    # with two separate encodes the decoded pixels differ and this assertion fails.
    assert all(np.array_equal(a, b) for a, b in zip(played, delivered, strict=True))
