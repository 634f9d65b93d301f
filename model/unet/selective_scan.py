"""The two sequence operators of a Mamba mixer, with optional CUDA kernels.

Selective scan (the "S6" recurrence of Mamba, Gu & Dao 2023), per sequence b and channel d,
with a state h of size N that starts at zero:

    delta_t = softplus(delta_t + delta_bias)          (both optional)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t     = <C_t, h_t> + D * u_t                     (D optional)
    y_t     = y_t * silu(z_t)                          (z optional)

Causal depthwise conv1d: each channel is convolved with its own width-W filter over the current
and the W-1 previous steps (zeros before the start), then optionally passed through SiLU.

Both have a pure-PyTorch implementation that runs everywhere. When `mamba-ssm` (selective scan)
and `causal-conv1d` are installed (the optional `gpu` extra) and the tensors live on CUDA, the
fused kernels are used instead. The PyTorch versions follow the kernels' numerics: inputs are
upcast to float32 (float64 stays float64), the scan runs in that precision, and the result is
cast back to the dtype of `u` / `x`, so a checkpoint gives the same output on either path.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

GPU_EXTRA_HINT = "install the optional GPU extra: pip install '.[gpu]' (mamba-ssm, causal-conv1d)"


@functools.cache
def _scan_kernel() -> Callable | None:
    """`mamba_ssm`'s fused selective scan, or None where the package is absent or unusable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):  # OSError: a compiled extension built for another torch/CUDA
        return None
    return selective_scan_fn


@functools.cache
def _conv_kernel() -> Callable | None:
    """`causal_conv1d`'s fused depthwise causal conv, or None where it is absent or unusable."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except (ImportError, OSError):
        return None
    return causal_conv1d_fn


def mamba_kernels_available() -> bool:
    """True when both fused kernels of the optional `gpu` extra can be imported here."""
    return _scan_kernel() is not None and _conv_kernel() is not None


def _want_kernel(kernel: Callable | None, tensor: torch.Tensor, use_kernel: bool | None, name: str) -> bool:
    """Decide the path: None means "kernel when possible", True insists, False forbids."""
    if use_kernel is False:
        return False
    possible = kernel is not None and tensor.is_cuda
    if use_kernel and not possible:
        where = "the tensors are not on CUDA" if kernel is not None else f"{name} is not importable"
        raise RuntimeError(f"the {name} CUDA kernel was requested but {where}; {GPU_EXTRA_HINT}")
    return possible


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float32, or float64 when any input is float64: half precision never accumulates the state."""
    dtype = torch.float32
    for tensor in tensors:
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.ndim != 3:
        raise ValueError(f"selective scan: u must be [batch, dim, length], got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.ndim != 2 or A.shape[0] != dim:
        raise ValueError(f"selective scan: A must be [dim={dim}, state], got shape {tuple(A.shape)}")
    state = A.shape[1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "B": (B, (batch, state, length)),
        "C": (C, (batch, state, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """Selective scan over the last axis; same arguments and layout as `mamba_ssm`'s `selective_scan_fn`.

    u, delta, z: [batch, dim, length]; A: [dim, state]; B, C: [batch, state, length]; D, delta_bias: [dim].
    Returns y: [batch, dim, length] in u's dtype. `use_kernel`: None picks the CUDA kernel when it is
    importable and u is on CUDA, True requires it, False forces the PyTorch path.
    """
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    if _want_kernel(_scan_kernel(), u, use_kernel, "mamba_ssm selective scan"):
        return _scan_kernel()(
            u, delta, A, B.contiguous(), C.contiguous(), D, z, delta_bias, delta_softplus
        )
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Pure-PyTorch selective scan: a sequential loop over the length axis.

    The frame axis is short (tens to a few hundred steps), so a loop that keeps only the current
    [batch, dim, state] state is both simple and memory-lean: nothing of size length x state is
    ever materialised, which keeps memory linear in the number of frames with a small constant.
    """
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    # Time-major copies so that each step reads one contiguous slice.
    delta_steps = delta.movedim(-1, 0).contiguous()  # [length, batch, dim]
    input_steps = (delta * u).movedim(-1, 0).contiguous()  # delta_t * u_t
    B_steps = B.movedim(-1, 0).contiguous()  # [length, batch, state]
    C_steps = C.movedim(-1, 0).contiguous()

    batch, dim, length = u.shape
    state = u.new_zeros(batch, dim, A.shape[1])
    y = u.new_empty(length, batch, dim)
    for t in range(length):
        decay = torch.exp(delta_steps[t].unsqueeze(-1) * A)  # [batch, dim, state]
        state = torch.addcmul(input_steps[t].unsqueeze(-1) * B_steps[t].unsqueeze(1), decay, state)
        y[t] = torch.bmm(state, C_steps[t].unsqueeze(-1)).squeeze(-1)
    y = y.movedim(0, -1)

    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(out_dtype)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The recurrence written out literally, one sequence, one channel, one step at a time.

    Float64 on the CPU, scalar arithmetic from the `math` module except for the state vector.
    Deliberately naive and slow: it shares no code with `selective_scan_torch`, so tests can
    hold the fast path (and, on CUDA, the kernel) against it on small inputs. Returns float64.
    """
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    u, delta, A, B, C = (t.detach().double().cpu() for t in (u, delta, A, B, C))
    batch, dim, length = u.shape
    y = torch.zeros(batch, dim, length, dtype=torch.float64)
    for b in range(batch):
        for d in range(dim):
            h = torch.zeros(A.shape[1], dtype=torch.float64)
            for t in range(length):
                step = float(delta[b, d, t]) + (float(delta_bias[d]) if delta_bias is not None else 0.0)
                if delta_softplus:  # softplus(x) = max(x, 0) + log(1 + exp(-|x|)), overflow-free
                    step = max(step, 0.0) + math.log1p(math.exp(-abs(step)))
                h = torch.exp(step * A[d]) * h + step * float(u[b, d, t]) * B[b, :, t]
                out = float(torch.dot(C[b, :, t], h))
                if D is not None:
                    out += float(D[d]) * float(u[b, d, t])
                if z is not None:
                    gate = float(z[b, d, t])
                    out *= gate / (1.0 + math.exp(-gate))
                y[b, d, t] = out
    return y


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """Depthwise causal convolution over the last axis; same layout as `causal_conv1d_fn`.

    x: [batch, dim, length]; weight: [dim, width]; bias: [dim]; activation: None or "silu".
    Output step t sees input steps t-width+1 .. t only. Returns [batch, dim, length] in x's dtype.
    """
    if x.ndim != 3 or weight.ndim != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"causal conv1d: need x [batch, dim, length] and weight [dim, width] with the same dim, "
            f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    if activation not in (None, "silu"):
        raise ValueError(f"causal conv1d: activation must be None or 'silu', got {activation!r}")
    if _want_kernel(_conv_kernel(), x, use_kernel, "causal_conv1d"):
        return _conv_kernel()(x.contiguous(), weight.contiguous(), bias, activation=activation)
    dtype = _compute_dtype(x, weight, bias)  # like the kernel: accumulate and activate in float32
    width = weight.shape[1]
    padded = F.pad(x.to(dtype), (width - 1, 0))
    out = F.conv1d(padded, weight.to(dtype).unsqueeze(1), None if bias is None else bias.to(dtype), groups=x.shape[1])
    return (F.silu(out) if activation == "silu" else out).to(x.dtype)
