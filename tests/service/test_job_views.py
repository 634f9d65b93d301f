"""GET /jobs/{id} and POST /jobs/{id}/cancel answer exactly the documented JobView (no field more,
none missing), and the OpenAPI document says so."""
from service.jobs.record import JobStatus, Result
from service.jobs.views import JobView
from tests.service.conftest import keypoint_upload


def test_queued_running_and_canceled_jobs_match_the_view(client, state):
    job_id = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    JobView.model_validate(client.get(f"/jobs/{job_id}").json())
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    running = JobView.model_validate(client.get(f"/jobs/{job_id}").json())
    assert running.status is JobStatus.RUNNING and running.result is None
    canceled = client.post(f"/jobs/{job_id}/cancel")
    assert canceled.status_code == 202
    assert JobView.model_validate(canceled.json()).cancel_requested


def test_a_succeeded_job_matches_the_view_with_its_result(client, state):
    job_id = client.post("/animate", files=keypoint_upload()).json()["job_id"]
    state.jobs.transition(job_id, JobStatus.RUNNING, worker="w")
    result = Result(frames=8, fps=8, width=64, height=64, duration_s=1.0, size_bytes=3, sha256="0" * 64,
                    key=f"jobs/{job_id}/result.mp4")
    state.jobs.transition(job_id, JobStatus.SUCCEEDED, result=result)
    view = JobView.model_validate(client.get(f"/jobs/{job_id}").json())
    assert view.result.url.endswith(f"/jobs/{job_id}/video") and view.expires_at is not None


def test_the_openapi_document_names_the_view(client):
    paths = client.get("/openapi.json").json()["paths"]
    ref = {"$ref": "#/components/schemas/JobView"}
    assert paths["/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == ref
    assert paths["/jobs/{job_id}/cancel"]["post"]["responses"]["202"]["content"]["application/json"]["schema"] == ref
