"""Temporal Mamba: the scan against a literal recurrence, the mixer against Mamba's recurrent
(one-token-at-a-time) form, bidirectional symmetry, the block's wiring and its state-dict layout."""
from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.unet.selective_scan import (
    causal_conv1d,
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


def swapped(layer: BidirectionalMambaLayer) -> BidirectionalMambaLayer:
    """The same layer with the forward and reverse mixers' weights exchanged."""
    state = layer.state_dict()
    exchanged = {
        key.replace("mixer_forward", "@").replace("mixer_reverse", "mixer_forward").replace("@", "mixer_reverse"): v
        for key, v in state.items()
    }
    other = copy.deepcopy(layer)
    other.load_state_dict(exchanged)
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
def test_fresh_block_is_the_identity_like_the_temporal_transformer():
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
