"""GET /jobs/{id}/live.m3u8 and its files: URIs rewritten for the client, the job's auth, 404 before
any segment; `live_url` in the job view and the SSE `segment` event; the SSE `queue` event."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from service.jobs.record import JobError, JobStatus
from service.jobs.views import JobView
from service.storage.objects import live_key
from tests.service.conftest import keypoint_upload
from tests.service.test_events_sse import read_sse

ALICE, BOB = "alice-key-0123", "bob-key-0123"


def stored_playlist(count: int, ended: bool = False) -> str:
    """A playlist as worker/live_playlist.py stores it: URIs relative to the playlist."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-TARGETDURATION:1",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-INDEPENDENT-SEGMENTS", '#EXT-X-MAP:URI="live/init.mp4"']
    for index in range(count):
        lines += ["#EXTINF:0.533333,", f"live/{index:04d}.m4s"]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if ended else [])]) + "\n"


def publish(storage, job_id: str, count: int, ended: bool = False) -> dict[str, bytes]:
    """Store `count` fragments (distinct bytes per file) and the playlist; returns name -> bytes."""
    files = {"init.mp4": f"init of {job_id}".encode()} | {
        f"{k:04d}.m4s": f"fragment {k} of {job_id}".encode() for k in range(count)}
    for name, data in files.items():
        storage.put_bytes(live_key(job_id, name), data)
    storage.put_bytes(live_key(job_id), stored_playlist(count, ended).encode())
    return files


def uris(text: str) -> list[str]:
    """The init section's URI, then every fragment URI."""
    lines = text.splitlines()
    init = [line.split('URI="')[1].rstrip('"') for line in lines if line.startswith("#EXT-X-MAP:")]
    return init + [line for line in lines if line and not line.startswith("#")]


@pytest.fixture
def keyed(make_client):
    client = make_client(api_keys=(ALICE, BOB))
    client.headers["Authorization"] = f"Bearer {ALICE}"
    return client


def running_job(client) -> str:
    job_id = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    client.app.state.services.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    return job_id


def test_no_playlist_before_the_first_segment(keyed):
    job_id = running_job(keyed)
    response = keyed.get(f"/jobs/{job_id}/live.m3u8")
    assert response.status_code == 404
    problem = response.json()
    assert problem["type"].endswith(":not-found") and "no finished segment yet" in problem["detail"]
    assert "live_url" not in keyed.get(f"/jobs/{job_id}").json()


def test_local_storage_rewrites_every_uri_to_the_api_and_serves_the_files(keyed):
    job_id = running_job(keyed)
    files = publish(keyed.app.state.services.storage, job_id, 3)
    response = keyed.get(f"/jobs/{job_id}/live.m3u8")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert response.headers["cache-control"] == "no-store"
    assert "#EXT-X-ENDLIST" not in response.text and response.text.count("#EXTINF:") == 3
    links = uris(response.text)
    base = f"http://testserver/jobs/{job_id}/live/"
    assert links == [base + name for name in files]  # init first, then the fragments in order
    for name, url in zip(files, links, strict=True):
        fetched = keyed.get(url)
        assert fetched.status_code == 200 and fetched.content == files[name]
    assert keyed.get(links[0]).headers["content-type"] == "video/mp4"
    assert keyed.get(links[1]).headers["content-type"] == "video/iso.segment"


def test_presigning_storage_gets_presigned_uris_and_redirects(keyed, monkeypatch):
    storage = keyed.app.state.services.storage
    monkeypatch.setattr(storage, "presigned_url", lambda key, expires_s: f"https://s3.example/{key}?ttl={expires_s}")
    job_id = running_job(keyed)
    files = publish(storage, job_id, 2, ended=True)
    text = keyed.get(f"/jobs/{job_id}/live.m3u8").text
    ttl = keyed.app.state.services.settings.presign_ttl_s
    assert uris(text) == [f"https://s3.example/{live_key(job_id, name)}?ttl={ttl}" for name in files]
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    redirect = keyed.get(f"/jobs/{job_id}/live/0001.m4s", follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["location"] == uris(text)[2]


def test_other_keys_and_no_key_do_not_see_the_playlist(keyed):
    job_id = running_job(keyed)
    publish(keyed.app.state.services.storage, job_id, 1)
    for path in (f"/jobs/{job_id}/live.m3u8", f"/jobs/{job_id}/live/0000.m4s"):
        assert keyed.get(path).status_code == 200
        assert keyed.get(path, headers={"Authorization": f"Bearer {BOB}"}).status_code == 404
        assert keyed.get(path, headers={"Authorization": ""}).status_code == 401
    assert keyed.get(f"/jobs/{'0' * 32}/live.m3u8").status_code == 404


def test_only_playlist_file_names_are_served(keyed):
    job_id = running_job(keyed)
    publish(keyed.app.state.services.storage, job_id, 1)
    for name in ("0001.m4s", "result.mp4", "..%2Flive.m3u8", "init.mp4.tmp"):
        response = keyed.get(f"/jobs/{job_id}/live/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


def test_the_view_links_the_playlist_once_a_segment_is_finished(keyed):
    job_id = running_job(keyed)
    jobs = keyed.app.state.services.jobs
    jobs.segment_started(job_id, 0, "w")
    assert JobView.model_validate(keyed.get(f"/jobs/{job_id}").json()).live_url is None
    jobs.segment_finished(job_id, 0, 1.5)
    view = JobView.model_validate(keyed.get(f"/jobs/{job_id}").json())
    assert view.live_url == f"http://testserver/jobs/{job_id}/live.m3u8"
    publish(keyed.app.state.services.storage, job_id, 1)
    assert keyed.get(view.live_url).status_code == 200


def test_the_segment_event_carries_the_playlist_link(client, state):
    job_id = running_job(client)
    state.jobs.segment_started(job_id, 0, "w")
    state.jobs.segment_finished(job_id, 0, 1.5)
    state.jobs.transition(job_id, JobStatus.FAILED, error=JobError(code="internal", message="x"))
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        events, _ = read_sse(response)
    [segment] = [e["data"] for e in events if e["event"] == "segment"]
    assert segment["index"] == 0 and segment["seconds"] == 1.5
    assert segment["live_url"] == f"http://testserver/jobs/{job_id}/live.m3u8"


def sse_events(response) -> Iterator[dict]:
    """Each event of an SSE body as it arrives: {"event", "data", "id"?}."""
    current: dict = {}
    for line in response.iter_lines():
        if not line and "data" in current:
            yield {**current, "data": json.loads(current["data"])}
            current = {}
        elif line and not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value


def test_a_queued_stream_sends_its_queue_position_when_it_changes(client, state):
    first, second = (client.post("/animate", files=keypoint_upload()).json()["job_id"] for _ in range(2))
    assert client.get(f"/jobs/{second}").json()["queue_position"] == 1
    seen = []
    with client.stream("GET", f"/jobs/{second}/events") as response:
        for event in sse_events(response):
            seen.append(event)
            if event["event"] == "queue" and event["data"]["queue_position"] == 1:
                client.post(f"/jobs/{first}/cancel")  # the job ahead leaves: the next poll says 0
            elif event["event"] == "queue":
                client.post(f"/jobs/{second}/cancel")  # ends the stream
    queue = [e for e in seen if e["event"] == "queue"]
    assert [e["data"] for e in queue] == [{"job_id": second, "queue_position": 1},
                                          {"job_id": second, "queue_position": 0}]
    assert all("id" not in e for e in queue), "queue events are not in the job's stream: no resume id"
    assert [e["data"]["status"] for e in seen if e["event"] == "status"] == ["queued", "canceled"]
