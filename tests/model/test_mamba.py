"""Temporal Mamba: the scan against a literal recurrence, kernel discovery and dispatch, the mixer
against Mamba's recurrent (one-token-at-a-time) form, bidirectional symmetry, the block's wiring,
half precision, its state-dict layout and telling a Mamba checkpoint from a transformer one."""
from __future__ import annotations

import copy
import dataclasses
import importlib.abc
import importlib.util
import io
import json
import logging
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.config import TEMPORAL_KINDS, UNetConfig
from model.unet import UniAnimateUNet
from model.unet import selective_scan as scan_module
from model.unet import temporal_mamba as mamba_module
from model.unet.detect import temporal_kind_of
from model.unet.selective_scan import (
    causal_conv1d,
    mamba_kernels_available,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)
from model.unet.temporal_mamba import BidirectionalMambaLayer, MambaMixer, TemporalMamba

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mamba.md"


def scan_inputs(seed: int, dtype: torch.dtype, batch=2, dim=3, length=7, state=4) -> dict[str, torch.Tensor]:
    """Random scan arguments with A < 0 (as Mamba's -exp(A_log)) and deltas of both signs."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length),
        "A": -torch.exp(randn(dim, state)),
        "B": randn(batch, state, length),
        "C": randn(batch, state, length),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim),
    }


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter (also the zero-initialised proj_out) so no path is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return module.eval()


# --- selective scan -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("softplus", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_scan_matches_naive_recurrence(dtype, atol, softplus, seed):
    args = scan_inputs(seed, dtype)
    if not softplus:  # raw deltas must then be positive steps, as the kernel assumes
        args["delta"] = args["delta"].abs()
        args["delta_bias"] = args["delta_bias"].abs()
    fast = selective_scan_torch(**args, delta_softplus=softplus)
    naive = selective_scan_reference(**args, delta_softplus=softplus)
    assert fast.dtype == dtype
    torch.testing.assert_close(fast.double(), naive, atol=atol, rtol=atol)


@pytest.mark.parametrize("omit", ["D", "z", "delta_bias"])
def test_scan_optional_terms_are_optional(omit):
    args = scan_inputs(3, torch.float64)
    args[omit] = None
    torch.testing.assert_close(
        selective_scan_torch(**args, delta_softplus=True),
        selective_scan_reference(**args, delta_softplus=True),
        atol=1e-12,
        rtol=1e-12,
    )


def test_scan_state_carries_information_forward_only():
    args = scan_inputs(4, torch.float64, length=9)
    before = selective_scan_torch(**args, delta_softplus=True)
    args["u"][:, :, 5] += 1.0
    after = selective_scan_torch(**args, delta_softplus=True)
    assert torch.equal(before[..., :5], after[..., :5])
    assert (before[..., 6:] - after[..., 6:]).abs().max() > 1e-6  # the state remembers step 5


def test_scan_half_precision_accumulates_in_float32():
    args = {k: v.to(torch.bfloat16) for k, v in scan_inputs(5, torch.float32, length=32).items()}
    out = selective_scan_torch(**args, delta_softplus=True)
    expected = selective_scan_torch(**{k: v.float() for k, v in args.items()}, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected.to(torch.bfloat16))


def test_scan_dispatch_on_cpu_uses_pytorch_and_refuses_a_forced_kernel():
    args = scan_inputs(6, torch.float32)
    assert torch.equal(selective_scan(**args, delta_softplus=True), selective_scan_torch(**args, delta_softplus=True))
    with pytest.raises(RuntimeError, match="kernel was requested"):
        selective_scan(**args, delta_softplus=True, use_kernel=True)


def test_scan_rejects_mismatched_shapes_with_the_offending_name():
    args = scan_inputs(7, torch.float32)
    args["B"] = args["B"].transpose(1, 2)  # [batch, length, state]: the common layout mistake
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_torch(**args)


# --- causal conv ----------------------------------------------------------------------------------


def test_causal_conv_is_the_explicit_windowed_sum():
    g = torch.Generator().manual_seed(8)
    x, weight, bias = torch.randn(2, 3, 6, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    expected = torch.zeros_like(x)
    for t in range(6):
        for k in range(4):  # weight[:, -1] multiplies the current step, weight[:, -1-j] the step t-j
            if t - 3 + k >= 0:
                expected[:, :, t] += weight[:, k] * x[:, :, t - 3 + k]
    expected += bias[:, None]
    torch.testing.assert_close(causal_conv1d(x, weight, bias), expected)
    torch.testing.assert_close(causal_conv1d(x, weight, bias, activation="silu"), F.silu(expected))


def test_causal_conv_rejects_bad_weight():
    with pytest.raises(ValueError, match="weight"):
        causal_conv1d(torch.zeros(1, 3, 5), torch.zeros(4, 4))


# --- finding the kernels and choosing a path --------------------------------------------------------

KERNEL_MODULES = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface", "causal_conv1d",
                  "causal_conv1d_cuda")


def fake_kernel(*args, **kwargs):
    raise AssertionError("a fake kernel is only ever chosen, never run")


@pytest.fixture
def probes(monkeypatch):
    """Kernel probes that look afresh at the modules a test installs, and forget them afterwards."""
    for name in KERNEL_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    scan_module._scan_kernel.cache_clear()
    scan_module._conv_kernel.cache_clear()
    yield
    scan_module._scan_kernel.cache_clear()  # before monkeypatch restores sys.modules
    scan_module._conv_kernel.cache_clear()


def install_modules(monkeypatch, modules: dict[str, object]) -> None:
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def fake_mamba_ssm(extension: object | None) -> dict[str, types.ModuleType]:
    """mamba-ssm as its newer releases install it: `selective_scan_fn` always imports, and the
    module-level `selective_scan_cuda` is None unless the extension was built."""
    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = fake_kernel
    interface.selective_scan_cuda = extension
    return {"mamba_ssm": types.ModuleType("mamba_ssm"), "mamba_ssm.ops": types.ModuleType("mamba_ssm.ops"),
            "mamba_ssm.ops.selective_scan_interface": interface}


def fake_causal_conv1d(compiled: bool) -> dict[str, object]:
    package = types.ModuleType("causal_conv1d")
    package.causal_conv1d_fn = fake_kernel
    # None in sys.modules makes `import causal_conv1d_cuda` raise ModuleNotFoundError
    return {"causal_conv1d": package, "causal_conv1d_cuda": types.ModuleType("causal_conv1d_cuda") if compiled else None}


class FailingImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds module `name` and raises `error` while executing it, as a package whose import
    initialises CUDA or triton, or loads an extension built for another torch, can."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name, self.error = name, error

    def find_spec(self, fullname, path, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == self.name else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise self.error


def choose(probe, refusal=None, use_kernel=None, on_cuda=True):
    """The path decision as selective_scan makes it for CUDA inputs (there is no GPU here)."""
    return scan_module._choose_kernel("test kernel", probe, refusal, on_cuda, use_kernel)


def test_mamba_ssm_without_its_compiled_scan_falls_back_and_says_why(probes, monkeypatch, caplog):
    install_modules(monkeypatch, fake_mamba_ssm(extension=None))
    with caplog.at_level(logging.INFO, logger=scan_module.__name__):
        assert scan_module._scan_kernel() is None
        assert scan_module._scan_kernel() is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # once, however often asked
    assert "selective_scan_cuda" in caplog.text and "MAMBA_KEEP_CUDA_BUILD=TRUE" in caplog.text
    assert not mamba_kernels_available()
    assert choose(scan_module._scan_kernel) is None  # CUDA inputs take the PyTorch path
    with pytest.raises(RuntimeError, match="kernel was requested but it is not usable here"):
        choose(scan_module._scan_kernel, use_kernel=True)


def test_mamba_ssm_with_its_compiled_scan_is_used(probes, monkeypatch):
    install_modules(monkeypatch, fake_mamba_ssm(extension=types.ModuleType("selective_scan_cuda")))
    assert scan_module._scan_kernel() is fake_kernel
    assert choose(scan_module._scan_kernel) is fake_kernel
    assert choose(scan_module._scan_kernel, use_kernel=False) is None


@pytest.mark.parametrize("compiled", [False, True])
def test_causal_conv1d_counts_only_with_its_compiled_extension(probes, monkeypatch, compiled):
    install_modules(monkeypatch, fake_causal_conv1d(compiled))
    assert scan_module._conv_kernel() is (fake_kernel if compiled else None)


@pytest.mark.parametrize("error", [RuntimeError("CUDA driver initialization failed"), OSError("undefined symbol"),
                                   AttributeError("module 'triton' has no attribute 'language'")])
def test_a_kernel_package_whose_import_fails_in_any_way_leaves_the_pytorch_path(probes, monkeypatch, caplog, error):
    for package in ("mamba_ssm", "causal_conv1d"):
        monkeypatch.setattr(sys, "meta_path", [FailingImport(package, error), *sys.meta_path])
    with caplog.at_level(logging.WARNING, logger=scan_module.__name__):
        assert scan_module._scan_kernel() is None and scan_module._conv_kernel() is None
    assert caplog.text.count(type(error).__name__) == 2 and not mamba_kernels_available()
    args = scan_inputs(15, torch.float32)
    assert torch.equal(selective_scan(**args, delta_softplus=True), selective_scan_torch(**args, delta_softplus=True))
    x, weight = torch.randn(1, 3, 5), torch.randn(3, 4)
    assert torch.equal(causal_conv1d(x, weight), causal_conv1d(x, weight, use_kernel=False))


@torch.no_grad()
def test_cpu_inputs_never_probe_for_kernels(monkeypatch):
    def probe():
        raise AssertionError("probed for a kernel on CPU inputs")

    monkeypatch.setattr(scan_module, "_scan_kernel", probe)
    monkeypatch.setattr(scan_module, "_conv_kernel", probe)
    args = scan_inputs(16, torch.float32)
    selective_scan(**args, delta_softplus=True)
    causal_conv1d(args["u"], torch.randn(3, 4))
    randomize_(TemporalMamba(32, inner_dim=16, d_state=4), seed=16)(torch.randn(1, 32, 4, 2, 2))
    with pytest.raises(RuntimeError, match="not on CUDA"):
        selective_scan(**args, use_kernel=True)
    with pytest.raises(RuntimeError, match="not on CUDA"):
        causal_conv1d(args["u"], torch.randn(3, 4), use_kernel=True)


def test_inputs_the_scan_kernel_does_not_take_go_to_pytorch_without_probing():
    def probe():
        raise AssertionError("probed although the kernel cannot take these inputs")

    reason = scan_module._scan_refusal(**scan_inputs(17, torch.float64))
    assert "float64" in reason
    assert choose(probe, reason) is None
    with pytest.raises(RuntimeError, match="u is torch.float64"):
        choose(probe, reason, use_kernel=True)
    args = scan_inputs(17, torch.float32, state=257)
    assert "at most 256" in scan_module._scan_refusal(**args)


def test_the_dtypes_the_mixer_passes_are_ones_the_scan_kernel_takes():
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        args = {k: v.to(dtype) for k, v in scan_inputs(18, torch.float32).items()}
        args.update({k: args[k].float() for k in ("A", "D", "delta_bias")})
        assert scan_module._scan_refusal(**args) is None, dtype
        assert choose(lambda: fake_kernel, scan_module._scan_refusal(**args)) is fake_kernel
        args["D"] = args["D"].to(torch.float16)
        assert "D is torch.float16" in scan_module._scan_refusal(**args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.no_grad()
def test_the_mixer_hands_the_kernels_inputs_they_take(monkeypatch, dtype):
    """On CUDA the same calls would take the kernels: a refusal here means a silent slow fallback."""
    refusals = []

    def scan_refusal(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        return scan_module._scan_refusal(u, delta, A, B, C, D, z, delta_bias)

    def conv_refusal(x, weight, bias=None, activation=None):
        return scan_module._conv_refusal(x, weight, bias)

    def spy(refusal_of, operator):
        def wrapped(*args, **kwargs):
            refusals.append(refusal_of(*args, **kwargs))
            return operator(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(mamba_module, "selective_scan", spy(scan_refusal, selective_scan))
    monkeypatch.setattr(mamba_module, "causal_conv1d", spy(conv_refusal, causal_conv1d))
    block = randomize_(TemporalMamba(32, inner_dim=16, d_state=4), seed=19).to(dtype)
    block(torch.randn(1, 32, 4, 2, 2, dtype=dtype))
    assert refusals == [None] * 4  # conv and scan of both mixers


def test_inputs_the_conv_kernel_does_not_take_are_named():
    x, weight = torch.randn(1, 8, 5), torch.randn(8, 4)
    assert scan_module._conv_refusal(x, weight, torch.randn(8)) is None
    assert "x is torch.float64" in scan_module._conv_refusal(x.double(), weight, None)
    assert "bias is torch.float16" in scan_module._conv_refusal(x, weight, torch.randn(8).half())
    assert "width is 5" in scan_module._conv_refusal(x, torch.randn(8, 5), None)


# --- mixer and bidirectional layer ----------------------------------------------------------------


def mixer_one_token_at_a_time(mixer: MambaMixer, hidden: torch.Tensor) -> torch.Tensor:
    """Mamba's recurrent inference form: a rolling conv window and an SSM state, one token per step."""
    n, length, _ = hidden.shape
    width = mixer.conv1d.weight.shape[-1]
    conv_window = hidden.new_zeros(n, mixer.d_inner, width)
    ssm_state = hidden.new_zeros(n, mixer.d_inner, mixer.d_state)
    A = -torch.exp(mixer.A_log)
    outputs = []
    for t in range(length):
        x, z = mixer.in_proj(hidden[:, t]).chunk(2, dim=-1)
        conv_window = torch.cat([conv_window[:, :, 1:], x.unsqueeze(-1)], dim=-1)
        x = F.silu((conv_window * mixer.conv1d.weight[:, 0]).sum(-1) + mixer.conv1d.bias)
        dt, B, C = mixer.x_proj(x).split([mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
        dt = F.softplus(mixer.dt_proj(dt))
        ssm_state = ssm_state * torch.exp(dt.unsqueeze(-1) * A) + (dt * x).unsqueeze(-1) * B.unsqueeze(1)
        y = (ssm_state * C.unsqueeze(1)).sum(-1) + mixer.D * x
        outputs.append(mixer.out_proj(y * F.silu(z)))
    return torch.stack(outputs, dim=1)


@torch.no_grad()
def test_mixer_matches_the_recurrent_one_token_form():
    mixer = randomize_(MambaMixer(8, d_state=4, d_conv=3, expand=2), seed=9).double()
    hidden = torch.randn(3, 10, 8, dtype=torch.float64)
    torch.testing.assert_close(mixer(hidden), mixer_one_token_at_a_time(mixer, hidden), atol=1e-10, rtol=1e-10)


def exchange_directions(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every mixer_forward entry stored as mixer_reverse and vice versa."""
    return {
        key.replace("mixer_forward", "@").replace("mixer_reverse", "mixer_forward").replace("@", "mixer_reverse"): v
        for key, v in state.items()
    }


def swapped(layer: BidirectionalMambaLayer) -> BidirectionalMambaLayer:
    """The same layer with the forward and reverse mixers' weights exchanged."""
    other = copy.deepcopy(layer)
    other.load_state_dict(exchange_directions(layer.state_dict()), strict=True)
    return other


@torch.no_grad()
def test_bidirectional_layer_is_time_reversal_equivariant_up_to_swapping_directions():
    layer = randomize_(BidirectionalMambaLayer(8, d_state=4, d_conv=3), seed=10).double()
    hidden = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(hidden.flip(1)), swapped(layer)(hidden).flip(1), atol=1e-12, rtol=1e-12)
    # With shared weights the layer commutes with time reversal.
    layer.mixer_reverse.load_state_dict(layer.mixer_forward.state_dict())
    torch.testing.assert_close(layer(hidden.flip(1)), layer(hidden).flip(1), atol=1e-12, rtol=1e-12)


@torch.no_grad()
def test_bidirectional_layer_sees_past_and_future_where_each_mixer_is_causal():
    layer = randomize_(BidirectionalMambaLayer(8, d_state=4, d_conv=3), seed=11).double()
    hidden = torch.randn(1, 9, 8, dtype=torch.float64)
    changed = hidden.clone()
    changed[:, 4] += torch.randn(8, dtype=torch.float64)  # not a constant: LayerNorm would remove it
    forward_delta = (layer.mixer_forward(changed) - layer.mixer_forward(hidden)).abs().amax(-1)[0]
    assert forward_delta[:4].max() == 0 and forward_delta[4:].min() > 0
    layer_delta = (layer(changed) - layer(hidden)).abs().amax(-1)[0]
    assert layer_delta.min() > 0  # frames before and after the change both move


# --- the block ------------------------------------------------------------------------------------


@torch.no_grad()
def test_fresh_block_is_the_identity_like_the_originals_temporal_transformer():
    block = TemporalMamba(32)
    x = torch.randn(1, 32, 5, 3, 2)
    assert torch.equal(block(x), x)


@torch.no_grad()
def test_block_runs_each_pixel_as_its_own_frame_sequence():
    block = randomize_(TemporalMamba(32, inner_dim=16, depth=2, d_state=4), seed=12).double()
    x = torch.randn(2, 32, 6, 3, 4, dtype=torch.float64)
    out = block(x)
    normed = block.norm(x)
    for b, h, w in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
        hidden = block.proj_in(normed[b, :, :, h, w].unsqueeze(0)).transpose(1, 2)
        for layer in block.layers:
            hidden = layer(hidden)
        expected = x[b, :, :, h, w] + block.proj_out(hidden.transpose(1, 2))[0]
        torch.testing.assert_close(out[b, :, :, h, w], expected, atol=1e-12, rtol=1e-12)


@torch.no_grad()
def test_block_with_shared_direction_weights_commutes_with_frame_reversal():
    block = randomize_(TemporalMamba(32, depth=2, d_state=4), seed=13).double()
    for layer in block.layers:
        layer.mixer_reverse.load_state_dict(layer.mixer_forward.state_dict())
    x = torch.randn(1, 32, 7, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(block(x.flip(2)), block(x).flip(2), atol=1e-12, rtol=1e-12)


def small_block(seed: int) -> TemporalMamba:
    """Two layers, every parameter random (proj_out too): the mixers decide the output."""
    return randomize_(TemporalMamba(32, inner_dim=16, depth=2, d_state=4), seed=seed).double()


def without_group_norm(block: TemporalMamba) -> TemporalMamba:
    """GroupNorm pools its statistics over all frames and pixels of a sample, so through it every
    output moves with every input; with it replaced by the identity, a change can only travel the
    way the layers carry it."""
    block.norm = torch.nn.Identity()
    return block


def only(direction: str, block: TemporalMamba) -> TemporalMamba:
    """Silence the other direction's mixer in every layer (its out_proj is zero)."""
    other = {"mixer_forward": "mixer_reverse", "mixer_reverse": "mixer_forward"}[direction]
    with torch.no_grad():
        for layer in block.layers:
            getattr(layer, other).out_proj.weight.zero_()
    return block


@torch.no_grad()
def test_block_output_is_shaped_by_every_mixer_and_its_scan():
    block = small_block(seed=20)
    x = torch.randn(1, 32, 6, 2, 3, dtype=torch.float64)
    base = block(x)
    assert (base - x).abs().max() > 1e-2  # the temporal path contributes at all
    for name in ("layers.0.mixer_forward", "layers.0.mixer_reverse", "layers.1.mixer_forward", "layers.1.mixer_reverse"):
        for parameter in ("in_proj.weight", "A_log"):  # A_log: the scan's decay, not just a projection
            changed = copy.deepcopy(block)
            changed.get_submodule(name).get_parameter(parameter).add_(0.5)
            assert (changed(x) - base).abs().max() > 1e-4, f"{name}.{parameter}"


@pytest.mark.parametrize("direction", ["mixer_forward", "mixer_reverse"])
@torch.no_grad()
def test_forward_mixer_reads_only_earlier_frames_and_reverse_only_later_ones(direction):
    block = only(direction, without_group_norm(small_block(seed=21)))
    x = torch.randn(1, 32, 8, 2, 2, dtype=torch.float64)
    changed = x.clone()
    changed[:, :, 4] += torch.randn(32, 2, 2, dtype=torch.float64)
    moved = (block(changed) - block(x)).abs().amax(dim=(0, 1, 3, 4))  # per frame
    earlier, later = moved[:4], moved[5:]
    if direction == "mixer_forward":
        assert earlier.max() == 0 and later.min() > 1e-6
    else:
        assert later.max() == 0 and earlier.min() > 1e-6


@torch.no_grad()
def test_block_mixes_the_frames_of_a_pixel_and_nothing_across_pixels_or_samples():
    block = without_group_norm(small_block(seed=22))
    x = torch.randn(2, 32, 6, 3, 4, dtype=torch.float64)
    changed = x.clone()
    changed[1, :, 0, 2, 1] += torch.randn(32, dtype=torch.float64)  # one frame of one pixel
    moved = (block(changed) - block(x)).abs().amax(dim=1)  # [batch, frames, height, width]
    assert moved[1, :, 2, 1].min() > 1e-6  # every frame of that pixel (through the forward scan)
    moved[1, :, 2, 1] = 0
    assert moved.max() == 0  # no other pixel, no other sample


@torch.no_grad()
def test_block_checkpoint_with_the_directions_exchanged_runs_time_reversed():
    block = small_block(seed=23)
    exchanged = TemporalMamba(32, inner_dim=16, depth=2, d_state=4).double()
    exchanged.load_state_dict(exchange_directions(block.state_dict()), strict=True)
    x = torch.randn(1, 32, 7, 2, 3, dtype=torch.float64)
    assert (exchanged(x) - block(x)).abs().max() > 1e-3  # which mixer is which matters
    torch.testing.assert_close(exchanged(x), block(x.flip(2)).flip(2), atol=1e-12, rtol=1e-12)


@torch.no_grad()
def test_every_temporal_mamba_block_of_the_tiny_unet_runs_and_shapes_the_output():
    torch.manual_seed(0)
    unet = UniAnimateUNet(dataclasses.replace(UNetConfig.tiny(), temporal="mamba")).eval()
    unet.set_zero_y(torch.randn(1, 77, unet.config.context_dim))
    x, t = torch.randn(1, 4, 3, 4, 4), torch.tensor([500])
    identity_output = unet(x, t)  # zero proj_out everywhere: the blocks add nothing
    blocks = [m for m in unet.modules() if isinstance(m, TemporalMamba)]
    assert len(blocks) == 8
    updates = {}

    def record(i: int):
        def hook(module, args, out):
            updates[i] = (out - args[0]).abs().max()  # returns None: the output stays as it is
        return hook

    for i, block in enumerate(blocks):
        randomize_(block, seed=30 + i)
        block.register_forward_hook(record(i))
    output = unet(x, t)
    assert sorted(updates) == list(range(8)) and min(updates.values()) > 1e-3  # each ran and did something
    assert not torch.allclose(output, identity_output)


def test_block_rejects_wrong_input_layout():
    with pytest.raises(ValueError, match=r"\[batch, 32, frames, height, width\]"):
        TemporalMamba(32)(torch.zeros(2, 5, 32, 4, 4))


def test_block_rejects_channels_that_group_norm_cannot_split():
    with pytest.raises(ValueError, match="multiple of norm_groups"):
        TemporalMamba(48)


# --- state-dict layout ----------------------------------------------------------------------------

# Key names and shapes of mamba_ssm.modules.mamba_simple.Mamba(d_model) with its defaults
# (d_state 16, d_conv 4, expand 2, dt_rank ceil(d_model/16), conv bias, no linear bias).
def mamba_ssm_layout(d_model: int) -> dict[str, tuple[int, ...]]:
    d_inner, dt_rank = 2 * d_model, -(-d_model // 16)
    return {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, 4),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 32, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, 16),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


def test_each_mixer_has_the_mamba_ssm_layout():
    mixer = MambaMixer(320)
    assert {k: tuple(v.shape) for k, v in mixer.state_dict().items()} == mamba_ssm_layout(320)


def documented_layout() -> dict[str, tuple[int, ...]]:
    """The `| key | shape |` rows of the per-block table in docs/mamba.md."""
    rows = re.findall(r"^\| `([\w.]+)` \| `\[([\d, ]+)\]` \|", DOCS.read_text(), flags=re.MULTILINE)
    return {key: tuple(int(n) for n in shape.split(",")) for key, shape in rows}


def test_documented_layout_is_the_modules_layout():
    block = TemporalMamba(320, inner_dim=320, depth=1)
    actual = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert documented_layout() == actual


@torch.no_grad()
def test_block_state_dict_round_trips_through_torch_save():
    block = randomize_(TemporalMamba(32, inner_dim=16, depth=1, d_state=4), seed=14)
    buffer = io.BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    loaded = TemporalMamba(32, inner_dim=16, depth=1, d_state=4)
    loaded.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(1, 32, 4, 2, 2)
    assert torch.equal(loaded.eval()(x), block(x))


# --- half precision -------------------------------------------------------------------------------

SSM_KEYS = ("A_log", ".D", "dt_proj.bias")


@torch.no_grad()
def test_half_precision_keeps_the_state_space_parameters_in_float32_unrounded():
    block = randomize_(TemporalMamba(32, inner_dim=16, d_state=4), seed=40)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    block.to(torch.bfloat16)
    after = block.state_dict()
    assert list(after) == list(before)  # the layout is untouched
    kept = [k for k in after if k.endswith(SSM_KEYS)]
    assert len(kept) == 6  # three per mixer, two mixers
    for key, tensor in after.items():
        if key in kept:
            assert tensor.dtype == torch.float32 and torch.equal(tensor, before[key]), key
        else:
            assert tensor.dtype == torch.bfloat16, key
    assert block.half().layers[0].mixer_forward.A_log.dtype == torch.float32
    assert block.double().layers[0].mixer_forward.A_log.dtype == torch.float64  # only half dtypes are held back


@torch.no_grad()
def test_a_half_precision_checkpoint_loads_its_state_space_parameters_as_float32():
    state = {k: v.half() for k, v in randomize_(TemporalMamba(32, inner_dim=16, d_state=4), seed=41).state_dict().items()}
    with torch.device("meta"):
        adopting = TemporalMamba(32, inner_dim=16, d_state=4)  # the checkpoint loader's way: adopt tensors
    adopting.load_state_dict(state, strict=True, assign=True)
    copying = TemporalMamba(32, inner_dim=16, d_state=4).half()
    copying.load_state_dict(state, strict=True)
    for block in (adopting, copying):
        for key, tensor in block.state_dict().items():
            expected = torch.float32 if key.endswith(SSM_KEYS) else torch.float16
            assert tensor.dtype == expected and torch.equal(tensor.half(), state[key]), key
    assert state["layers.0.mixer_forward.A_log"].dtype == torch.float16  # the caller's dict is left alone


@torch.no_grad()
def test_bfloat16_block_stays_close_to_float32():
    block = randomize_(TemporalMamba(32, inner_dim=16, d_state=4), seed=42)
    x = torch.randn(1, 32, 12, 2, 2)
    expected = block(x)
    output = copy.deepcopy(block).to(torch.bfloat16)(x.bfloat16())
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), expected, atol=0.05, rtol=0.05)


# --- telling the temporal kind from checkpoint keys ------------------------------------------------


def unet_keys(config: UNetConfig) -> list[str]:
    with torch.device("meta"):  # keys only: nothing is allocated
        return list(UniAnimateUNet(config).state_dict())


def test_the_released_layout_is_a_temporal_transformer_checkpoint(reference):
    keys = json.loads((reference / "unianimate_unet_state_dict.json").read_text())
    assert temporal_kind_of(keys) == "transformer"


@pytest.mark.parametrize("config", [UNetConfig.tiny(), UNetConfig.released()], ids=["tiny", "released"])
@pytest.mark.parametrize("kind", TEMPORAL_KINDS)
def test_temporal_kind_is_read_back_from_a_unets_own_keys(config, kind):
    keys = unet_keys(dataclasses.replace(config, temporal=kind))
    assert temporal_kind_of(iter(keys)) == kind  # any iterable, consumed once


def test_a_checkpoint_mixing_temporal_layouts_is_refused():
    mamba = unet_keys(dataclasses.replace(UNetConfig.tiny(), temporal="mamba"))
    transformer = unet_keys(UNetConfig.tiny())
    for prefix in ("output_blocks.3.2.", "input_blocks.0.1."):  # a level block, and the stem
        mixed = [k for k in mamba if not k.startswith(prefix)] + [k for k in transformer if k.startswith(prefix)]
        with pytest.raises(ValueError, match=rf"mixes temporal layouts.*{re.escape(prefix[:-1])}"):
            temporal_kind_of(mixed)


@pytest.mark.parametrize("case", ["no temporal blocks", "wrapper prefix", "empty"])
def test_keys_without_a_known_temporal_layout_are_refused(case):
    keys = {
        "no temporal blocks": unet_keys(dataclasses.replace(UNetConfig.tiny(), temporal_attention=False)),
        "wrapper prefix": ["module." + k for k in unet_keys(UNetConfig.tiny())],
        "empty": [],
    }[case]
    with pytest.raises(ValueError, match="no temporal blocks of a known layout"):
        temporal_kind_of(keys)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_a_float32_mamba_checkpoint_loads_its_state_space_parameters_exact_in_half_precision(dtype):
    """The pipeline's loader (build_unet) must not round A_log, D and dt_proj.bias through `dtype`."""
    from model.pipeline import build_unet

    config = dataclasses.replace(UNetConfig.tiny(), temporal="mamba")
    state = randomize_(UniAnimateUNet(config), seed=43).state_dict()
    loaded = build_unet(state, config, torch.device("cpu"), dtype).state_dict()
    ssm = [k for k in state if k.endswith(SSM_KEYS)]
    assert ssm and all(not state[k].half().double().equal(state[k].double()) for k in ssm)  # fp16 would round
    for key, tensor in loaded.items():
        if key in ssm:
            assert tensor.dtype == torch.float32 and torch.equal(tensor, state[key]), key
        else:
            assert tensor.dtype == dtype, key
