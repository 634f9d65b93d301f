"""Every error is RFC 9457 problem+json with a useful detail; bad input is never a 500."""
import pytest

from tests.service.conftest import keypoint_upload

PROBLEM = "application/problem+json"


def assert_problem(response, status, slug=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("urn:unianimate:problem:")
    if slug:
        assert body["type"].endswith(slug)
    return body


def test_unknown_path_is_a_404_problem(client):
    assert "/docs" in assert_problem(client.get("/nope"), 404, "not-found")["detail"]


def test_wrong_method_is_a_405_problem(client):
    assert "DELETE is not allowed" in assert_problem(client.delete("/animate"), 405)["detail"]


def test_unsupported_media_type(client):
    assert_problem(client.post("/animate", content=b"x", headers={"content-type": "text/plain"}), 415)


def test_params_errors_name_the_field(client):
    files = keypoint_upload()
    response = client.post("/animate", files=files, data={"params": '{"steps": 0, "height": 700, "x": 1}'})
    body = assert_problem(response, 422, "invalid-request")
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"params.steps", "params.height", "params.x"}
    assert "multiple of 64" in body["detail"]


@pytest.mark.parametrize("params, words", [
    ("[1]", "params must be a JSON object"),
    ('{"steps": NaN}', "NaN is not valid JSON"),
    ("{oops", "invalid JSON"),
])
def test_params_that_are_not_an_object(client, params, words):
    body = assert_problem(client.post("/animate", files=keypoint_upload(), data={"params": params}), 422)
    assert words in body["detail"]


def test_exactly_one_pose_source(client):
    files = keypoint_upload(pose_video=("v.mp4", b"whatever", "video/mp4"))
    assert "exactly one of" in assert_problem(client.post("/animate", files=files), 422)["detail"]
    files = {"reference_image": keypoint_upload()["reference_image"]}
    assert "exactly one of" in assert_problem(client.post("/animate", files=files), 422)["detail"]


def test_missing_reference_image(client):
    files = {"pose_keypoints": keypoint_upload()["pose_keypoints"]}
    assert "reference_image is required" in assert_problem(client.post("/animate", files=files), 422)["detail"]


def test_unknown_form_field(client):
    response = client.post("/animate", files=keypoint_upload(), data={"sneaky": "1"})
    assert "unknown form field 'sneaky'" in assert_problem(response, 422)["detail"]


def test_undecodable_image_names_the_field(client):
    files = keypoint_upload(reference_image=("a.png", b"garbage", "image/png"))
    body = assert_problem(client.post("/animate", files=files), 422, "invalid-input")
    assert body["field"] == "reference_image"


@pytest.mark.parametrize("data, words", [
    ({"webhook_url": "ftp://x"}, "webhook_url"),
    ({"webhook_url": "https://10.0.0.7/hook"}, "private"),
    ({"webhook_url": "https://169.254.169.254/latest"}, "webhook_url"),
    ({"webhook_url": "http://127.0.0.1:9/hook"}, "https"),
    ({"webhook_url": "https://127.0.0.1/h", "webhook_events": "job.exploded"}, "job.exploded"),
    ({"webhook_events": "job.failed"}, "needs a webhook_url"),
])
def test_bad_webhook_settings(client, data, words):
    response = client.post("/animate", files=keypoint_upload(), data=data)
    assert words in assert_problem(response, 422)["detail"]


def test_malformed_multipart_is_a_4xx(client):
    response = client.post("/animate", content=b"--x\r\nnonsense",
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith(PROBLEM)


def test_json_body_errors(client):
    body = assert_problem(client.post("/animate", json={"pose_video_url": "https://e.com/v.mp4"}), 422)
    assert body["errors"][0]["field"] == "reference_image_url"
    assert_problem(client.post("/animate", json={"reference_image_url": "https://e.com/a.png", "what": 1}), 422)
    response = client.post("/animate", content=b'{"reference_image_url": NaN}',
                           headers={"content-type": "application/json"})
    assert_problem(response, 422)


def test_bad_idempotency_key(client):
    response = client.post("/animate", files=keypoint_upload(), headers={"Idempotency-Key": "x" * 300})
    assert "Idempotency-Key" in assert_problem(response, 422)["detail"]


def test_declared_oversize_body_is_refused_before_reading(make_client):
    client = make_client(max_upload_bytes=2048)
    response = client.post("/animate", content=b"x" * 5000, headers={"content-type": "application/json"})
    assert "larger than 2048 bytes" in assert_problem(response, 413, "too-large")["detail"]


def test_streamed_oversize_body_is_cut_off(make_client):
    """No Content-Length (chunked): the limit applies while the bytes arrive."""
    client = make_client(max_upload_bytes=4096)
    chunks = iter([b"a" * 1024] * 64)
    response = client.post("/animate", content=chunks,
                           headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert_problem(response, 413, "too-large")


def test_auth_required_when_keys_are_set(make_client):
    client = make_client(api_keys=("k1",))
    body = assert_problem(client.get("/jobs/" + "0" * 32), 401, "unauthorized")
    assert "Bearer" in body["detail"]
    assert client.get("/jobs/" + "0" * 32).headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/jobs/" + "0" * 32, headers={"Authorization": "Bearer nope"}), 401)
    assert_problem(client.get("/jobs/" + "0" * 32, headers={"Authorization": "Bearer k1"}), 404)


def test_job_ids_that_do_not_exist(client):
    assert_problem(client.get("/jobs/not-an-id"), 404)
    assert_problem(client.get("/jobs/" + "a" * 32), 404)
    assert_problem(client.post("/jobs/" + "a" * 32 + "/cancel"), 404)
    assert_problem(client.get("/jobs/" + "a" * 32 + "/video"), 404)
    assert_problem(client.get("/jobs/" + "a" * 32 + "/events"), 404)


def test_redis_down_is_a_503_problem(make_client):
    client = make_client(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.5)
    body = assert_problem(client.get("/jobs/" + "a" * 32), 503, "unavailable")
    assert "Redis" in body["detail"]
    assert client.get("/jobs/" + "a" * 32).headers["retry-after"] == "5"
