"""How POST /animate handles the upload itself: big parts are copied off the event loop, and a
client that hangs up mid-body is let go quietly (no 500, no error in the log)."""
import asyncio
import logging

import pytest

from service.api import animate_request
from tests.service.conftest import keypoint_upload


def test_parts_are_copied_and_hashed_in_the_threadpool(client, monkeypatch):
    calls = []
    original = animate_request._save_part

    def spy(name, value, tmp, hasher):
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        path = original(name, value, tmp, hasher)
        calls.append((name, on_loop, getattr(getattr(value, "file", None), "closed", True)))
        return path

    monkeypatch.setattr(animate_request, "_save_part", spy)
    assert client.post("/animate", files=keypoint_upload()).status_code == 202
    assert sorted(name for name, _, _ in calls) == ["pose_keypoints", "reference_image"]
    assert not any(on_loop for _, on_loop, _ in calls), "a part was copied on the event loop"
    assert all(closed for _, _, closed in calls), "the spool should be freed once copied"


def _scope(content_type: bytes) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/animate", "raw_path": b"/animate", "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
            "headers": [(b"host", b"testserver"), (b"content-type", content_type)]}


async def _hang_up(app, content_type: bytes, first_chunk: bytes) -> list[dict]:
    """Send part of a body, then the disconnect uvicorn delivers when the client goes away."""
    messages = [{"type": "http.request", "body": first_chunk, "more_body": True}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(_scope(content_type), receive, send)
    return sent


@pytest.mark.parametrize("content_type, chunk", [
    (b"multipart/form-data; boundary=zz",
     b'--zz\r\nContent-Disposition: form-data; name="reference_image"; filename="a.png"\r\n\r\n' + b"x" * 5000),
    (b"application/json", b'{"reference_image_url": "https://exa'),
])
def test_a_client_that_hangs_up_mid_body_is_not_a_500(client, caplog, content_type, chunk):
    with caplog.at_level(logging.INFO):
        sent = asyncio.run(_hang_up(client.app, content_type, chunk))
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert 500 not in statuses
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.message for r in caplog.records]
    assert any("client went away" in r.message for r in caplog.records)
