from service.jobs.record import JobStatus
from tests.service.conftest import keypoint_upload
from tests.service.test_api_errors import assert_problem


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"redis": "ok", "storage": "ok"}}


def test_readyz_names_what_is_down(make_client):
    client = make_client(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.5)
    body = assert_problem(client.get("/readyz"), 503, "unavailable")
    assert body["checks"]["storage"] == "ok" and body["checks"]["redis"].startswith("unreachable")


def test_metrics_report_jobs_queue_segments_and_gpu_time(client, state):
    first = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    client.post("/animate", files=keypoint_upload())
    assert state.fair.release(0).job_id == first  # what the render worker's dispatcher does
    state.jobs.transition(first, JobStatus.RUNNING, worker="w")
    state.jobs.segment_started(first, 0, "w")
    state.jobs.segment_finished(first, 0, seconds=42.0)
    state.jobs.transition(first, JobStatus.CANCELED)
    text = client.get("/metrics").text
    assert 'unianimate_jobs{state="queued"} 1.0' in text
    assert 'unianimate_jobs{state="canceled"} 1.0' in text
    assert 'unianimate_queue_depth{queue="render"} 0.0' in text  # the dispatcher is a worker's (none here)
    assert "unianimate_jobs_waiting 1.0" in text  # the second job waits its turn in its key's list
    assert 'unianimate_key_jobs{key="anonymous",state="queued"} 1.0' in text
    assert 'unianimate_key_limit{key="anonymous",limit="max_queued"} 100.0' in text
    key_gpu = next(line for line in text.splitlines() if line.startswith("unianimate_key_gpu_seconds_today"))
    assert float(key_gpu.split()[-1]) > 0
    assert 'unianimate_segment_seconds_bucket{le="30.0"} 0.0' in text
    assert 'unianimate_segment_seconds_bucket{le="60.0"} 1.0' in text
    assert "unianimate_segment_seconds_sum 42.0" in text
    gpu = next(line for line in text.splitlines() if line.startswith("unianimate_gpu_seconds_total"))
    assert float(gpu.split()[-1]) > 0


def test_openapi_documents_both_request_bodies(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/animate"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "application/problem+json" in spec["paths"]["/jobs/{job_id}"]["get"]["responses"]["404"]["content"]
