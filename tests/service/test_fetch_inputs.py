"""JSON POST /animate with input URLs, guarded by service.netguard."""
import asyncio
import http.server
import threading
import time
from contextlib import contextmanager

import pytest

from service.api.animate_request import _download_all
from service.api.problems import Problem
from tests.service.test_api_errors import assert_problem
from tests.support.media import keypoints_bytes, png_bytes

FILES = {"/ref.png": png_bytes(), "/poses.json": keypoints_bytes(), "/big.png": b"x" * 50_000}
SLOW_CHUNKS = 200  # /slow dribbles this many bytes, 20 ms apart (4 s in all)


@contextmanager
def file_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.end_headers()
                return
            if self.path == "/slow":
                self._dribble()
                return
            body = FILES.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def _dribble(self):
            self.send_response(200)
            self.send_header("Content-Length", str(SLOW_CHUNKS))
            self.end_headers()
            try:
                for _ in range(SLOW_CHUNKS):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.02)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_url_inputs_are_downloaded_checked_and_stored(make_client):
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))
    with file_server() as base:
        response = client.post("/animate", json={"reference_image_url": f"{base}/ref.png",
                                                 "pose_keypoints_url": f"{base}/poses.json",
                                                 "params": {"steps": 4}})
    assert response.status_code == 202, response.text
    state = client.app.state.services
    job = state.jobs.get(response.json()["job_id"])
    assert job.params.steps == 4
    assert state.storage.get_bytes(job.inputs["reference_image"]) == FILES["/ref.png"]


def test_plain_http_and_private_addresses_are_refused(client):
    # both plain http: refused before any DNS look-up, whichever URL is checked first
    body = {"reference_image_url": "http://example.com/a.png", "pose_keypoints_url": "http://example.com/p"}
    assert "must use https" in assert_problem(client.post("/animate", json=body), 422, "input-unreachable")["detail"]
    body = {"reference_image_url": "https://127.0.0.1/a.png", "pose_keypoints_url": "https://10.0.0.1/p"}
    assert "not allowed" in assert_problem(client.post("/animate", json=body), 422)["detail"]


def test_redirects_are_checked_too(make_client):
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))
    with file_server() as base:
        body = {"reference_image_url": f"{base}/redirect?to=https://169.254.169.254/latest/meta-data",
                "pose_keypoints_url": f"{base}/poses.json"}
        assert "not allowed" in assert_problem(client.post("/animate", json=body), 422)["detail"]


def test_one_refused_url_cancels_the_other_downloads(settings, tmp_path):
    """The refusal must not leave a sibling download writing into the request's temp directory
    while it is removed (that race was a 500): when the error leaves, no download is still running."""
    settings = settings.model_copy(update={"webhook_allow_hosts": frozenset({"127.0.0.1"})})

    async def refuse_one() -> list[asyncio.Task]:
        urls = {"reference_image": f"{base}/redirect?to=https://169.254.169.254/latest",
                "pose_keypoints": f"{base}/slow"}
        with pytest.raises(Problem, match="reference_image_url"):
            await _download_all(urls, tmp_path, settings)
        # asyncio finalises abandoned async generators (httpx's stream cleanup) in tasks of their
        # own; those close sockets and write nothing, so only other pending tasks count
        return [task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()
                and type(task.get_coro()).__name__ != "async_generator_athrow"]

    with file_server() as base:
        assert asyncio.run(refuse_one()) == []


def test_downloads_over_the_limit_are_abandoned(make_client):
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}), max_upload_bytes=10_000)
    with file_server() as base:
        body = {"reference_image_url": f"{base}/big.png", "pose_keypoints_url": f"{base}/poses.json"}
        assert "limit" in assert_problem(client.post("/animate", json=body), 422)["detail"]


def test_a_dribbling_server_hits_the_deadline_for_the_whole_url(make_client):
    """/slow sends a byte every 20 ms for 4 s: never a 1 s pause between reads, yet 4 s in all."""
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}), fetch_timeout_s=1.0)
    with file_server() as base:
        started = time.monotonic()
        response = client.post("/animate", json={"reference_image_url": f"{base}/slow",
                                                 "pose_keypoints_url": f"{base}/poses.json"})
        elapsed = time.monotonic() - started
    body = assert_problem(response, 422, "input-unreachable")
    assert "reference_image_url" in body["detail"] and "within 1 s" in body["detail"]
    assert elapsed < 3.0


def test_keypoint_downloads_stop_at_the_json_limit(make_client):
    """A keypoint document over max_json_bytes would be refused anyway: it is not downloaded whole."""
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}), max_json_bytes=10_000)
    with file_server() as base:
        body = {"reference_image_url": f"{base}/ref.png", "pose_keypoints_url": f"{base}/big.png"}
        detail = assert_problem(client.post("/animate", json=body), 422, "input-unreachable")["detail"]
    assert "pose_keypoints_url" in detail and "the limit is 10000" in detail
