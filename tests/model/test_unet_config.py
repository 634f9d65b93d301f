"""UNetConfig: the two named configurations, the mapping from the original's arguments, validation."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from model.config import UNetConfig
from model.unet import TemporalBlock, make_temporal_block


def test_released_matches_the_merged_yaml_and_default_config():
    config = UNetConfig.released()
    assert config.attn_scales == (1.0, 0.5, 0.25)  # from the default cfg, not the class default
    assert (config.dim, config.dim_mult, config.num_res_blocks, config.head_dim) == (320, (1, 2, 4, 4), 2, 64)
    assert config.embed_dim == 1280 and config.concat_dim == 8 and config.temporal == "transformer"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        UNetConfig.tiny().dim = 64


def test_from_original_kwargs(reference):
    kwargs = torch.load(reference / "fixtures/unet_tiny.pt", weights_only=True)["config"]["kwargs"]
    assert UNetConfig.from_original_kwargs(kwargs) == UNetConfig.tiny()
    assert UNetConfig.from_original_kwargs({"dim": 64, "num_heads": None}).num_heads == 2
    with pytest.raises(ValueError, match="unsupported"):
        UNetConfig.from_original_kwargs({"not_an_argument": 1})
    with pytest.raises(ValueError, match="use_fps_condition"):
        UNetConfig.from_original_kwargs({"use_fps_condition": True})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"temporal": "lstm"}, "temporal="),
        ({"video_compositions": ("pose",)}, "unknown entries"),
        ({"head_dim": 24}, "multiple of head_dim"),
        ({"in_dim": 8}, "in_dim must be 4"),
    ],
)
def test_invalid_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(UNetConfig.tiny(), **change)


def test_temporal_factory_keeps_video_shape():
    block = make_temporal_block(UNetConfig.tiny(), channels=32, heads=2, head_dim=16)
    assert isinstance(block, TemporalBlock)
    x = torch.randn(2, 32, 5, 3, 4)
    with torch.no_grad():
        y = block(x)
    assert y.shape == x.shape and not torch.equal(x, y)


def test_lists_become_tuples_so_configs_compare_and_hash():
    config = dataclasses.replace(UNetConfig.tiny(), dim_mult=[1, 2], attn_scales=[1.0, 0.5])
    assert config == UNetConfig.tiny() and hash(config) == hash(UNetConfig.tiny())
