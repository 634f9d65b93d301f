"""Webhook and input URLs aimed at the service's own network, directly or by redirect: 4xx."""
import pytest

from tests.hostile import payloads
from tests.hostile.checks import assert_refused
from tests.service.test_fetch_inputs import file_server
from tests.support.media import png_bytes

# Every one names a host that is (or resolves to) a non-public address, in a different spelling.
INTERNAL = [
    "https://127.0.0.1/h", "https://127.1/h", "https://2130706433/h", "https://0x7f000001/h", "https://0177.0.0.1/h",
    "https://localhost/h", "https://0.0.0.0/h", "https://[::]/h", "https://[::1]/h", "https://10.0.0.7/h",
    "https://172.16.5.4/h", "https://192.168.0.1/h", "https://100.64.0.1/h", "https://169.254.169.254/latest",
    "https://169.254.170.2/v2/credentials", "https://100.100.100.200/", "https://[fd00:ec2::254]/",
    "https://[fe80::1]/h", "https://[fc00::1]/h", "https://[::ffff:127.0.0.1]/h", "https://[::ffff:a9fe:a9fe]/h",
    "https://[::ffff:10.0.0.1]/h", "https://[64:ff9b::a9fe:a9fe]/h", "https://[2002:a9fe:a9fe::]/h",
    "https://user:pw@10.0.0.1/h", "https://example.com@127.0.0.1/h", "https://127.0.0.1:6379/h",
]
NOT_URLS = ["ftp://example.com/h", "file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "javascript:1",
            "https://", "https://[::1", "//example.com/h", "example.com/h", "https://exa mple.com/h"]


def upload():
    return {"reference_image": ("r.png", png_bytes(), "image/png"),
            "pose_keypoints": ("k.json", payloads.openpose_frames(2), "application/json")}


@pytest.mark.parametrize("url", INTERNAL + NOT_URLS)
def test_webhook_urls_to_internal_addresses(client, state, settings, url):
    response = client.post("/animate", files=upload(), data={"webhook_url": url})
    assert "webhook_url" in assert_refused(response, state, settings.local_storage_dir)["detail"]


@pytest.mark.parametrize("url", INTERNAL + NOT_URLS)
def test_input_urls_to_internal_addresses(client, state, settings, url):
    body = {"reference_image_url": url, "pose_keypoints_url": url}
    response = client.post("/animate", json=body)
    assert "_url" in assert_refused(response, state, settings.local_storage_dir)["detail"]


def test_redirects_from_an_allowed_host_to_internal_ones(make_client, settings):
    """127.0.0.1 is allowed (a test file server); each redirect target reaches that same server
    under another name, so only the per-hop check stands between the API and the file."""
    client = make_client(webhook_allow_hosts=frozenset({"127.0.0.1"}))
    state = client.app.state.services
    with file_server() as base:
        port = base.rsplit(":", 1)[1]
        targets = [f"http://localhost:{port}/ref.png", f"http://127.1:{port}/ref.png",
                   f"http://2130706433:{port}/ref.png", f"http://[::ffff:127.0.0.1]:{port}/ref.png",
                   f"http://0.0.0.0:{port}/ref.png", "http://169.254.169.254/latest/meta-data",
                   "https://[fd00:ec2::254]/latest", "file:///etc/passwd", "gopher://127.0.0.1:6379/_x"]
        for target in targets:
            body = {"reference_image_url": f"{base}/redirect?to={target}", "pose_keypoints_url": f"{base}/poses.json"}
            detail = assert_refused(client.post("/animate", json=body), state, settings.local_storage_dir)["detail"]
            assert "reference_image_url" in detail, (target, detail)
        chain = f"{base}/redirect?to=" * 7 + f"{base}/ref.png"  # more hops than allowed
        body = {"reference_image_url": chain, "pose_keypoints_url": f"{base}/poses.json"}
        assert "redirects" in assert_refused(client.post("/animate", json=body), state,
                                             settings.local_storage_dir)["detail"]
        # the same server under its allowed name works, so the refusals above are the guard's doing
        ok = {"reference_image_url": f"{base}/redirect?to={base}/ref.png", "pose_keypoints_url": f"{base}/poses.json",
              "params": {"fps": 8}}
        assert client.post("/animate", json=ok).status_code == 202
