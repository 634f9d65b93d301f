"""Replays `fixtures/unet_tiny.pt`: golden outputs of the original UNet on seeded random weights."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from model.config import UNetConfig
from model.conformance import CheckResult
from model.unet import UniAnimateUNet
from model.unet.transformer import SpatialTransformer


def check_unet_fixture(path: Path, data: dict) -> CheckResult:
    """Every output (and the recorded intermediates of the `full` call) within the file's tolerance."""
    # any configuration the original accepts: the file's constructor arguments decide the model
    config = UNetConfig.from_original_kwargs(data["config"]["kwargs"])
    model = UniAnimateUNet(config).eval()
    model.load_state_dict(data["state_dict"], strict=True)
    inputs = data["inputs"]
    model.set_zero_y(inputs["zero_y"])

    actual: dict[str, Tensor] = {}
    expected: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, keys in data["config"]["output_kwargs"].items():
            kwargs = {key: inputs[key] for key in keys}
            if name == "full":
                with _captured_intermediates(model) as captured:
                    actual[name] = model(inputs["x"], inputs["t"], **kwargs)
                actual.update(captured)
                expected.update(data["intermediates"])
            else:
                actual[name] = model(inputs["x"], inputs["t"], **kwargs)
            expected[name] = data["outputs"][name]
    return _compare(path, actual, expected, data["tolerance"])


@contextmanager
def _captured_intermediates(model: UniAnimateUNet) -> Iterator[dict[str, Tensor]]:
    """Records the tensors the fixture stores under `intermediates` while the block runs."""
    captured: dict[str, Tensor] = {}
    first_spatial = next(m for m in model.modules() if isinstance(m, SpatialTransformer))
    handles = [
        model.time_embed.register_forward_hook(lambda _m, _a, out: captured.update(time_embedding=out)),
        model.input_blocks[0][0].register_forward_pre_hook(lambda _m, args: captured.update(unet_input=args[0])),
        first_spatial.register_forward_pre_hook(lambda _m, args: captured.update(context=args[1])),
        model.middle_block[-1].register_forward_hook(lambda _m, _a, out: captured.update(middle_output=out)),
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _compare(path: Path, actual: dict[str, Tensor], expected: dict[str, Tensor], tolerance: dict) -> CheckResult:
    """Max abs error per tensor (inf for a missing or misshapen one) and the file's allclose verdict."""
    errors: dict[str, float] = {}
    failed: list[str] = []
    for name, reference in expected.items():
        result = actual.get(name)
        if result is None or result.shape != reference.shape:
            errors[name] = float("inf")
            failed.append(f"{name}: shape {None if result is None else list(result.shape)} != {list(reference.shape)}")
            continue
        errors[name] = (result.float() - reference).abs().max().item()
        if not torch.allclose(result.float(), reference, atol=tolerance["atol"], rtol=tolerance["rtol"]):
            failed.append(f"{name}: max abs err {errors[name]:.3g}")
    worst_name = max(errors, key=errors.__getitem__)
    detail = "; ".join(failed) if failed else f"{len(errors)} tensors, worst {worst_name}"
    return CheckResult(str(path), "unet", errors[worst_name], not failed, detail)
