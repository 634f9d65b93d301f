"""Schemathesis against the served OpenAPI document: schema-valid and schema-invalid requests to
every operation, authenticated, with path ids that are random or real (queued, succeeded, another
key's). Every response must be documented, be no 5xx, and every error must be problem+json.

`make test` runs a few hundred cases; `make fuzz` multiplies that (UNIANIMATE_FUZZ_SCALE). The
count of cases and statuses is printed, for docs/reliability.md.
"""
from __future__ import annotations

import collections
import hashlib

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api.app import create_app
from service.jobs.record import JobStatus, Result
from service.settings import ApiSettings
from service.storage.objects import result_key
from tests.fuzz.budget import examples
from tests.support.media import keypoint_upload_files

KEY, OTHER_KEY = "fuzz-key", "other-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# POST /animate validates content (images, keypoints, exactly one pose source) beyond what a JSON
# schema can say, so a schema-valid request may rightly be a 422: that check is left out.
EXCLUDED = [positive_data_acceptance]


@pytest.fixture
def app(redis_url, tmp_path):
    return create_app(ApiSettings(redis_url=redis_url, storage="local", local_storage_dir=tmp_path / "storage",
                                  api_keys=(KEY, OTHER_KEY), sse_keepalive_s=0.2,
                                  key_rate_per_s=0, key_max_queued=0))  # limits: test_key_limits.py


def real_job_ids(app) -> list[str]:
    """A queued job, a succeeded one with its video, and one belonging to another key."""
    state = app.state.services
    with TestClient(app) as client:
        ids = [client.post("/animate", files=keypoint_upload_files(), headers=headers).json()["job_id"]
               for headers in (AUTH, AUTH, {"Authorization": f"Bearer {OTHER_KEY}"})]
    done = ids[1]
    stored = state.storage.put_bytes(result_key(done), b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    state.jobs.transition(done, JobStatus.RUNNING, worker="fuzz")
    state.jobs.transition(done, JobStatus.SUCCEEDED, result=Result(
        frames=1, fps=8, width=64, height=64, duration_s=0.125, size_bytes=stored.size_bytes,
        sha256=stored.sha256, key=stored.key))
    assert state.jobs.get(ids[2]).owner == hashlib.sha256(OTHER_KEY.encode()).hexdigest()
    return ids


def fuzz_operation(operation, mode: GenerationMode, ids: list[str], statuses: collections.Counter) -> None:
    """Hypothesis over one operation's requests; path ids are random or one of `ids`."""
    name = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy(generation_mode=mode), job_id=st.sampled_from([None, *ids]))
    @settings(max_examples=examples(15), deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case, job_id):
        if job_id is not None and "job_id" in (case.path_parameters or {}):
            case.path_parameters["job_id"] = job_id
        response = case.call(headers=AUTH)
        case.validate_response(response, excluded_checks=EXCLUDED)
        if response.status_code >= 400:
            assert response.headers["content-type"][0].startswith("application/problem+json"), response.text
        statuses[(name, response.status_code)] += 1

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_fuzz_finds_no_server_error(app, mode, capsys):
    ids = real_job_ids(app)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    called: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # an endless stream: tests/service/test_events_sse.py
        try:
            fuzz_operation(operation, mode, ids, statuses)
        except Unsatisfiable:  # no schema-invalid request exists (no body; any string is a valid id)
            assert mode is GenerationMode.NEGATIVE
            continue
        called.add(f"{operation.method.upper()} {operation.path}")
    expected = {"POST /animate"} if mode is GenerationMode.NEGATIVE else {
        "POST /animate", "GET /jobs/{job_id}", "POST /jobs/{job_id}/cancel", "GET /jobs/{job_id}/video"}
    assert expected <= called, called
    assert all(code < 500 for _, code in statuses)
    with capsys.disabled():
        print(f"\n[schemathesis {mode.value}] {sum(statuses.values())} cases, no 5xx: "
              + ", ".join(f"{op} {code}: {n}" for (op, code), n in sorted(statuses.items())))
