"""The UNet against the original: golden tiny fixture, released key layout and parameter summary."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from model.conformance import check_file
from model.conformance.layout import check_unet_layout, check_unet_summary
from model.conformance.unet import check_unet_fixture

FILES = ["fixtures/unet_tiny.pt", "unianimate_unet_state_dict.json", "unianimate_unet_summary.json"]


@pytest.mark.parametrize("name", FILES)
def test_reference_file_passes(reference, name):
    result = check_file(reference / name)
    assert result.passed, result.line()
    assert result.kind in {"unet", "unet_layout", "unet_summary"}
    if result.kind == "unet":  # 4 outputs and 4 intermediates, all within 1e-4
        assert result.detail.startswith("8 tensors") and result.worst_error < 1e-4


def test_fixture_checker_detects_a_wrong_weight(reference):
    data = torch.load(reference / "fixtures/unet_tiny.pt", weights_only=True)
    # Only the `full` call, to keep the test fast.
    config = dict(data["config"], output_kwargs={"full": data["config"]["output_kwargs"]["full"]})
    broken = dict(data, config=config, state_dict=dict(data["state_dict"]))
    key = "output_blocks.0.0.temopral_conv.conv2.3.weight"
    broken["state_dict"][key] = broken["state_dict"][key] + 0.01
    result = check_unet_fixture(reference / "fixtures/unet_tiny.pt", broken)
    assert not result.passed
    assert "middle_output" not in result.detail  # a decoder weight cannot change the middle block
    assert "full" in result.detail


def test_layout_checker_detects_a_wrong_shape_and_order(reference):
    data = json.loads((reference / "unianimate_unet_state_dict.json").read_text())
    assert check_unet_layout(reference, data).worst_error == 0

    wrong_shape = copy.deepcopy(data)
    wrong_shape["out.2.bias"]["shape"] = [8]
    result = check_unet_layout(reference, wrong_shape)
    assert not result.passed and "out.2.bias" in result.detail

    keys = list(data)
    keys[0], keys[1] = keys[1], keys[0]
    result = check_unet_layout(reference, {k: data[k] for k in keys})
    assert not result.passed and "order" in result.detail


def test_summary_checker_detects_a_wrong_count(reference):
    data = json.loads((reference / "unianimate_unet_summary.json").read_text())
    broken = copy.deepcopy(data)
    broken["per_block"]["middle_block.2"]["parameters"] += 1
    result = check_unet_summary(reference, broken)
    assert not result.passed and result.worst_error == 1 and "middle_block.2" in result.detail

    broken = copy.deepcopy(data)
    broken["constructor_kwargs"]["attn_scales"] = [0.5, 0.25, 0.125]
    assert not check_unet_summary(reference, broken).passed
