"""Against the API as a real uvicorn process: 413 while the body streams, and memory that stays
flat through a batch of bombs (RSS and peak RSS of the API process, from /proc)."""
from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hostile import payloads
from tests.hostile.api_process import ApiProcess, api_process
from tests.support.media import png_bytes

MiB = 1024 * 1024
UPLOAD_LIMIT = 32 * MiB
WARM_UP_ROUNDS = 2
ROUNDS = 10  # each hostile request below is sent this many times after the warm-up rounds


@pytest.fixture(scope="module")
def api(redis_service, tmp_path_factory) -> Iterator[ApiProcess]:
    """Production limits except a smaller body limit (32 MiB), so the 413 tests send little."""
    with api_process(redis_service.url, tmp_path_factory.mktemp("api"), max_upload_bytes=str(UPLOAD_LIMIT)) as proc:
        yield proc


def _status_line(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def _offer_chunked(api: ApiProcess, content_type: bytes, preamble: bytes, offered: int = 256 * MiB
                   ) -> tuple[bytes, int]:
    """POST a chunked body of `offered` bytes, stopping once the server answers: (status line, bytes sent)."""
    host, port = api.url.removeprefix("http://").split(":")
    chunk = b"x" * (256 * 1024)
    sent = 0
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /animate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: %s\r\n\r\n%x\r\n%s\r\n" % (content_type, len(preamble), preamble))
        while sent < offered:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return _status_line(sock), sent


@pytest.mark.parametrize("content_type, preamble, limit", ids=["multipart", "json"], argvalues=[
    (b"multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="reference_image"; filename="a.png"\r\n\r\n', UPLOAD_LIMIT),
    (b"application/json", b'{"params": "', 1 * MiB),  # a JSON request is capped at 1 MiB, not the upload limit
])
def test_chunked_body_over_the_limit_is_cut_off_while_streaming(api, content_type, preamble, limit):
    """No Content-Length: the API answers 413 once the limit is passed, without reading the rest
    (we offer 256 MiB; the answer comes after little more than the limit)."""
    status, sent = _offer_chunked(api, content_type, preamble)
    assert status.startswith(b"HTTP/1.1 413"), status
    assert sent < limit + 16 * MiB, f"the server read {sent} bytes before refusing"
    print(f"\n[413] {content_type.split(b';')[0].decode()}: answered after {sent / MiB:.2f} MiB of a 256 MiB "
          f"chunked body (limit {limit / MiB:.0f} MiB)")


def test_declared_huge_body_is_refused_before_any_is_sent(api):
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /animate HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        assert _status_line(sock).startswith(b"HTTP/1.1 413")


def hostile_requests(tmp_path) -> dict[str, dict]:
    """httpx.post keyword arguments of each hostile request, all answered 4xx."""
    keypoints = ("k.json", payloads.openpose_frames(2), "application/json")
    image = ("r.png", png_bytes(), "image/png")
    mp4 = payloads.video_bytes(tmp_path)
    return {
        "png bomb 20000x20000": {"files": {"reference_image": ("a.png", payloads.png_of_zeros(20_000, 20_000)),
                                           "pose_keypoints": keypoints}},
        "zTXt bomb 64 MB": {"files": {"reference_image": ("a.png", payloads.png_with_text_bomb()),
                                      "pose_keypoints": keypoints}},
        "jpeg claiming 65000x65000": {"files": {"reference_image": ("a.jpg", payloads.jpeg_claiming(65_000, 65_000)),
                                                "pose_keypoints": keypoints}},
        "mp4 claiming 2^31 frames": {"files": {"reference_image": image, "pose_video": (
            "v.mp4", payloads.mp4_with_time_to_sample(mp4, sample_count=2**31 - 1))}},
        "7 MB of empty JSON objects": {"files": {"reference_image": image, "pose_keypoints": (
            "k.json", payloads.many_empty_objects(7 * MiB))}},
        "JSON nested 1M deep": {"files": {"reference_image": image, "pose_keypoints": (
            "k.json", payloads.nested_json(1_000_000))}},
        "20001 keypoint frames": {"files": {"reference_image": image, "pose_keypoints": (
            "k.json", b'{"fps": 8, "frames": [' + b",".join([b'{"people": []}'] * 20_001) + b"]}")}},
        "7 MB JSON request": {"content": b'{"params": "' + b"x" * (7 * MiB) + b'"}',
                              "headers": {"content-type": "application/json"}},
    }


def test_memory_stays_flat_through_a_batch_of_bombs(api, tmp_path, capsys):
    requests = hostile_requests(tmp_path)
    with httpx.Client(base_url=api.url, timeout=60) as client:
        def send_all() -> None:
            for name, kwargs in requests.items():
                response = client.post("/animate", **kwargs)
                assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
                assert response.headers["content-type"].startswith("application/problem+json"), name

        for _ in range(WARM_UP_ROUNDS):  # codecs, parsers and allocator pools reach their working size
            send_all()
        before = api.memory_kib()
        started = time.monotonic()
        for _ in range(ROUNDS):
            send_all()
        after = api.memory_kib()
    grown_mib = (after["VmRSS"] - before["VmRSS"]) / 1024
    peak_grown_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    with capsys.disabled():
        print(f"\n[memory] {ROUNDS * len(requests)} hostile requests in {time.monotonic() - started:.1f} s: "
              f"RSS {before['VmRSS'] / 1024:.0f} -> {after['VmRSS'] / 1024:.0f} MiB, "
              f"peak {before['VmHWM'] / 1024:.0f} -> {after['VmHWM'] / 1024:.0f} MiB")
    assert grown_mib < 24, f"RSS grew {grown_mib:.0f} MiB over {ROUNDS} rounds"
    assert peak_grown_mib < 24, f"peak RSS grew {peak_grown_mib:.0f} MiB after the warm-up rounds"
    assert after["VmHWM"] < 320 * 1024, f"peak RSS {after['VmHWM'] / 1024:.0f} MiB"
