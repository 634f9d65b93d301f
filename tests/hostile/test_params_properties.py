"""Whatever `params` a client sends, POST /animate answers 202 with exactly those params recorded
(the worker reads them back from the record), or 422 naming fields under `params`; never a 5xx."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.jobs.params import RenderParams
from tests.fuzz.budget import examples
from tests.hostile import payloads
from tests.support.media import png_bytes

FIELDS = list(RenderParams.model_fields)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 64, 512, 768, 2048, 4096, 30, 200, 939, 999, 2**32 - 1, 2**32, 0.5, 2.5, 20.0, 51]),
    st.sampled_from(["chain", "window", "", "30", "true"]), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
params_documents = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), values, max_size=6)


@settings(max_examples=examples(60), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(params=params_documents)
def test_params_are_recorded_exactly_or_refused_by_field(client, params):
    state = client.app.state.services
    files = {"reference_image": ("r.png", png_bytes(), "image/png"),
             "pose_keypoints": ("k.json", payloads.openpose_frames(2), "application/json")}
    response = client.post("/animate", files=files, data={"params": json.dumps(params)})
    try:
        expected = RenderParams.model_validate(params)
    except ValidationError:
        expected = None
    if expected is None:
        assert response.status_code == 422, response.text
        assert all(error["field"].startswith("params") for error in response.json()["errors"])
        return
    assert response.status_code == 202, response.text
    recorded = state.jobs.get(response.json()["job_id"]).params
    assert recorded.model_dump(exclude={"seed"}) == expected.model_dump(exclude={"seed"})
    assert recorded.seed == expected.seed if expected.seed is not None else 0 <= recorded.seed < 2**32
