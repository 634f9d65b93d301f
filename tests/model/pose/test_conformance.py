"""`python -m model.conformance ../shared/reference/pose/*.json` passes, and would notice a difference."""
from __future__ import annotations

import json

import pytest

from model.conformance import check_file
from model.conformance.pose import check_align_case, check_draw_case


@pytest.mark.parametrize("name", ["draw_case_1", "draw_case_2", "draw_case_3", "draw_case_4", "align_case_1"])
def test_reference_case_passes(reference, name):
    result = check_file(reference / "pose" / f"{name}.json")
    assert result.passed, result.detail
    assert result.worst_error <= 1e-6


def test_a_moved_joint_fails_the_draw_check(reference):
    path = reference / "pose" / "draw_case_2.json"
    data = json.loads(path.read_text())
    data["bodies"]["candidate"][4][0] += 0.01  # right wrist 5 px to the right
    result = check_draw_case(path, data)
    assert not result.passed and "pixels differ" in result.detail


def test_a_changed_driving_frame_fails_the_align_check(reference):
    path = reference / "pose" / "align_case_1.json"
    data = json.loads(path.read_text())
    data["driving"][3]["pose"]["bodies"]["candidate"][7][1] += 0.001
    result = check_align_case(path, data)
    assert not result.passed and result.worst_error > 1e-6
