"""GET /jobs/{id}/events: replay, live tail, Last-Event-ID resume, keep-alives, end at terminal."""
import json
import threading
import time

from service.jobs.record import JobError, JobStatus
from tests.service.conftest import keypoint_upload


def read_sse(response):
    """Parse an SSE body into (events, comment count)."""
    events, comments, current = [], 0, {}
    for line in response.iter_lines():
        if line.startswith(":"):
            comments += 1
        elif not line:
            if "data" in current:
                events.append({**current, "data": json.loads(current["data"])})
            current = {}
        else:
            name, _, value = line.partition(": ")
            current[name] = value
    return events, comments


def new_job(client):
    return client.post("/animate", files=keypoint_upload()).json()["job_id"]


def run_job(state, job_id):
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    state.jobs.update_progress(job_id, segment=0, segments_total=1, step=5, steps_total=10, frames_done=0,
                               frames_total=8)
    state.jobs.transition(job_id, JobStatus.FAILED, error=JobError(code="internal", message="x"))


def test_replay_of_a_finished_job_ends_after_the_terminal_event(client, state):
    job_id = new_job(client)
    run_job(state, job_id)
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events, _ = read_sse(response)
    assert [e["event"] for e in events] == ["status", "status", "progress", "status"]
    assert events[-1]["data"]["status"] == "failed" and events[2]["data"]["fraction"] == 0.5
    assert all(e["id"] for e in events)


def test_resume_with_last_event_id(client, state):
    job_id = new_job(client)
    run_job(state, job_id)
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        events, _ = read_sse(response)
    with client.stream("GET", f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[1]["id"]}) as response:
        rest, _ = read_sse(response)
    assert [e["id"] for e in rest] == [e["id"] for e in events[2:]]
    with client.stream("GET", f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[-1]["id"]}) as response:
        assert read_sse(response)[0] == []  # nothing after the end, and the stream closes


def test_live_events_with_keepalives(client, state):
    job_id = new_job(client)

    def later():
        time.sleep(0.6)  # longer than the 0.2 s keep-alive interval of the test settings
        run_job(state, job_id)

    worker = threading.Thread(target=later)
    worker.start()
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        events, comments = read_sse(response)
    worker.join()
    assert [e["data"].get("status") for e in events if e["event"] == "status"] == ["queued", "running", "failed"]
    assert comments >= 1


def test_quiet_stream_outlives_the_redis_read_timeout(make_client, state):
    """A keep-alive wait longer than redis-py's default 5 s read timeout must not cut the stream."""
    client = make_client(sse_keepalive_s=5.5)
    job_id = new_job(client)

    def later():
        time.sleep(6.0)  # one whole quiet keep-alive wait
        run_job(state, job_id)

    worker = threading.Thread(target=later)
    worker.start()
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        events, comments = read_sse(response)
    worker.join()
    assert events[-1]["data"].get("status") == "failed" and comments >= 1
