"""Checks the released UNet's parameter layout against a build of `UniAnimateUNet` on the meta device.

`unianimate_unet_state_dict.json` lists every checkpoint key (in order) with shape and dtype;
`unianimate_unet_summary.json` gives parameter counts per top-level module and per block, and the
original constructor arguments. No weights are needed: the model is built without memory.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from model.config import UNetConfig
from model.conformance import CheckResult
from model.unet import UniAnimateUNet

_SHOWN = 3  # mismatches quoted in the detail line


def build_meta_unet(config: UNetConfig) -> UniAnimateUNet:
    with torch.device("meta"):
        return UniAnimateUNet(config)


def check_unet_layout(path: Path, data: dict) -> CheckResult:
    """Key order and names, shapes, dtypes, key count and element count of the released layout.
    worst_error is the number of mismatching entries."""
    state = build_meta_unet(UNetConfig.released()).state_dict()
    problems: list[str] = []
    ours, theirs = list(state), list(data)
    if ours != theirs:
        missing = [k for k in theirs if k not in state]
        extra = [k for k in ours if k not in data]
        if missing or extra:
            problems.append(f"missing {missing[:_SHOWN]} ({len(missing)}), unexpected {extra[:_SHOWN]} ({len(extra)})")
        else:
            first = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
            problems.append(f"key order differs from position {first}: {ours[first]} vs {theirs[first]}")
    for key, entry in data.items():
        tensor = state.get(key)
        if tensor is None:
            continue
        if list(tensor.shape) != entry["shape"]:
            problems.append(f"{key}: shape {list(tensor.shape)} != {entry['shape']}")
        if str(tensor.dtype).removeprefix("torch.") != entry["dtype"]:
            problems.append(f"{key}: dtype {tensor.dtype} != {entry['dtype']}")
    elements = sum(t.numel() for t in state.values())
    expected_elements = sum(math.prod(entry["shape"]) for entry in data.values())
    if elements != expected_elements:
        problems.append(f"{elements} elements != {expected_elements}")
    detail = "; ".join(problems[:_SHOWN]) if problems else f"{len(state)} keys, {elements:,} elements"
    return CheckResult(str(path), "unet_layout", float(len(problems)), not problems, detail)


def check_unet_summary(path: Path, data: dict) -> CheckResult:
    """Constructor arguments, total and per-module parameter counts, and block composition.

    The original has two parameter-free top-level modules this implementation leaves out
    (`misc_dropout`, training-time condition dropout, and `pre_image`, an empty Sequential); a
    module listed with 0 parameters may be absent. worst_error is the largest parameter-count gap.
    """
    kwargs = dict(data["constructor_kwargs"], config=data["constructor_kwargs_config_object"])
    problems: list[str] = []
    if UNetConfig.from_original_kwargs(kwargs) != UNetConfig.released():
        problems.append("UNetConfig.released() differs from the summary's constructor arguments")
    model = build_meta_unet(UNetConfig.released())
    counts = {"total": (_param_count(model), data["total_parameters"])}
    children = dict(model.named_children())
    for name, expected in data["per_top_level_module_parameters"].items():
        counts[name] = (_param_count(children[name]) if name in children else 0, expected)
    for name in children.keys() - data["per_top_level_module_parameters"].keys():
        counts[name] = (_param_count(children[name]), 0)
    for name, entry in data["per_block"].items():
        block = model.get_submodule(name)
        counts[name] = (_param_count(block), entry["parameters"])
        types = [type(m).__name__ for m in block] if isinstance(block, nn.ModuleList) else [type(block).__name__]
        if types != entry["modules"]:
            problems.append(f"{name}: modules {types} != {entry['modules']}")
    gaps = {name: abs(ours - theirs) for name, (ours, theirs) in counts.items()}
    problems += [f"{name}: {counts[name][0]:,} parameters != {counts[name][1]:,}" for name, gap in gaps.items() if gap]
    detail = "; ".join(problems[:_SHOWN]) if problems else f"{counts['total'][0]:,} parameters, {len(counts)} counts"
    return CheckResult(str(path), "unet_summary", float(max(gaps.values())), not problems, detail)


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
