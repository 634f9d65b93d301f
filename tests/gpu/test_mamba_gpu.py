"""The mamba-ssm / causal-conv1d CUDA kernels against the PyTorch path they replace.

Skipped unless CUDA and both kernel packages (the optional `gpu` extra) are available.
"""
from __future__ import annotations

import pytest
import torch

from model.unet import selective_scan as scan_module
from model.unet.selective_scan import (
    causal_conv1d,
    mamba_kernels_available,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)
from model.unet.temporal_mamba import TemporalMamba

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not mamba_kernels_available(), reason="needs the gpu extra (mamba-ssm, causal-conv1d)"),
]

# Kernel and PyTorch both accumulate in float32; half-precision outputs may differ by a rounding step.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def scan_inputs(dtype: torch.dtype, batch: int, dim: int, length: int, state: int = 16) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape, dtype=dtype):
        return torch.randn(*shape, generator=g, device="cuda", dtype=dtype)

    return {  # the dtypes the Mamba mixer passes: A, D, delta_bias in float32, the rest in the input dtype
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length),
        "A": -torch.exp(randn(dim, state, dtype=torch.float32)),
        "B": randn(batch, state, length),
        "C": randn(batch, state, length),
        "D": randn(dim, dtype=torch.float32),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim, dtype=torch.float32),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("length", [33, 257])
def test_scan_kernel_equals_pytorch_scan(dtype, length):
    args = scan_inputs(dtype, batch=64, dim=48, length=length)
    kernel = selective_scan(**args, delta_softplus=True, use_kernel=True)
    torch_path = selective_scan_torch(**args, delta_softplus=True)
    assert kernel.dtype == torch_path.dtype == dtype
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(kernel.float(), torch_path.float(), atol=tol, rtol=tol)


def test_scan_kernel_equals_naive_recurrence():
    args = scan_inputs(torch.float32, batch=2, dim=4, length=12, state=8)
    kernel = selective_scan(**args, delta_softplus=True, use_kernel=True)
    torch.testing.assert_close(kernel.double().cpu(), selective_scan_reference(**args, delta_softplus=True),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_conv_kernel_equals_pytorch_conv(dtype):
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(32, 64, 129, generator=g, device="cuda", dtype=dtype)
    weight = torch.randn(64, 4, generator=g, device="cuda", dtype=dtype)
    bias = torch.randn(64, generator=g, device="cuda", dtype=dtype)
    kernel = causal_conv1d(x, weight, bias, activation="silu", use_kernel=True)
    torch_path = causal_conv1d(x, weight, bias, activation="silu", use_kernel=False)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(kernel.float(), torch_path.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@torch.no_grad()
def test_block_gives_the_same_output_with_and_without_kernels(dtype, monkeypatch):
    torch.manual_seed(2)
    block = TemporalMamba(64, depth=2)
    torch.nn.init.normal_(block.proj_out.weight, std=0.05)  # a fresh block is the identity
    block = block.to("cuda", dtype).eval()
    x = torch.randn(2, 64, 33, 6, 5, device="cuda", dtype=dtype)
    with_kernels = block(x)
    monkeypatch.setattr(scan_module, "_scan_kernel", lambda: None)
    monkeypatch.setattr(scan_module, "_conv_kernel", lambda: None)
    without = block(x)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(with_kernels.float(), without.float(), atol=tol, rtol=tol)


def test_dtypes_the_kernels_do_not_take_fall_back_to_pytorch_on_cuda():
    args = {k: v.double() for k, v in scan_inputs(torch.float32, batch=4, dim=8, length=17).items()}
    torch.testing.assert_close(selective_scan(**args, delta_softplus=True),
                               selective_scan_torch(**args, delta_softplus=True), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="float64"):
        selective_scan(**args, delta_softplus=True, use_kernel=True)
    x, weight = args["u"], torch.randn(8, 4, device="cuda", dtype=torch.float64)
    torch.testing.assert_close(causal_conv1d(x, weight), causal_conv1d(x, weight, use_kernel=False), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="float64"):
        causal_conv1d(x, weight, use_kernel=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_half_precision_block_runs_on_both_kernels(dtype, monkeypatch):
    """With A_log, D and dt_proj.bias kept in float32 the block's calls are ones the kernels take."""
    calls = []

    def counting(probe):
        kernel = probe()

        def wrapped(*args, **kwargs):
            calls.append(probe.__name__)
            return kernel(*args, **kwargs)
        return lambda: wrapped

    monkeypatch.setattr(scan_module, "_scan_kernel", counting(scan_module._scan_kernel))
    monkeypatch.setattr(scan_module, "_conv_kernel", counting(scan_module._conv_kernel))
    block = TemporalMamba(64, depth=1).to("cuda", dtype).eval()
    assert block.layers[0].mixer_forward.A_log.dtype == torch.float32
    block(torch.randn(1, 64, 9, 4, 4, device="cuda", dtype=dtype))
    assert sorted(calls) == ["_conv_kernel"] * 2 + ["_scan_kernel"] * 2  # both mixers, both operators
