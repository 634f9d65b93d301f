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
and `causal-conv1d` are installed with their compiled extensions (the optional `gpu` extra), the
tensors live on CUDA and their dtypes are ones the kernels take, the fused kernels are used
instead; anything else takes the PyTorch path. The PyTorch versions follow the kernels' numerics:
inputs are upcast to float32 (float64 stays float64), the scan runs in that precision, and the
result is cast back to the dtype of `u` / `x`, so a checkpoint gives the same output on either path.
"""
from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

GPU_EXTRA_HINT = ("install the optional GPU extra after torch: pip install --no-build-isolation '.[gpu]' "
                  "(mamba-ssm, causal-conv1d; see docs/mamba.md)")
# From mamba-ssm commit f577286 on (releases after 2.3.2.post1), a plain install leaves the
# selective-scan extension out.
MAMBA_BUILD_HINT = "reinstall with: MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation mamba-ssm"
# What both kernels accept for activations (csrc/selective_scan/selective_scan.cpp, csrc/causal_conv1d.cpp).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --- finding the kernels --------------------------------------------------------------------------


def _unavailable(package: str, reason: str, expected: bool = False) -> None:
    """Says once (the probes are cached) why `package`'s kernel is not used; the PyTorch path runs."""
    level = logging.INFO if expected else logging.WARNING
    log.log(level, "%s CUDA kernel unavailable, using the PyTorch path: %s", package, reason)


def _import_optional(name: str, package: str, compiled: bool = False) -> ModuleType | None:
    """`name` imported, or None (logged) when importing it fails in any way.

    A package that is simply not installed is the normal state without the `gpu` extra and is
    logged at INFO; everything else (a missing `compiled` extension, a broken install) at WARNING.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        not_installed = not compiled and exc.name == name.split(".")[0]
        _unavailable(package, f"{exc}; {GPU_EXTRA_HINT}", expected=not_installed)
    # Anything can escape a kernel package's import: OSError from an extension built for another
    # torch/CUDA, RuntimeError from triton or CUDA initialisation, AttributeError from a version
    # skew. None of them should stop a render that the PyTorch path can do.
    except Exception as exc:  # noqa: BLE001
        _unavailable(package, f"importing {name} failed: {type(exc).__name__}: {exc}")
    return None


@functools.cache
def _scan_kernel() -> Callable | None:
    """`mamba_ssm`'s fused selective scan, or None where it cannot run here (reason logged once).

    That `selective_scan_fn` imports is not enough: newer mamba-ssm imports its compiled
    `selective_scan_cuda` inside try/except, leaves it None when it was not built, and raises only
    when the scan is called. So the extension the function will call must itself be present.
    """
    interface = _import_optional("mamba_ssm.ops.selective_scan_interface", "mamba-ssm")
    if interface is None:
        return None
    if getattr(interface, "selective_scan_cuda", None) is None:
        _unavailable("mamba-ssm", f"it was installed without its selective_scan_cuda extension; {MAMBA_BUILD_HINT}")
        return None
    kernel = getattr(interface, "selective_scan_fn", None)
    if kernel is None:
        _unavailable("mamba-ssm", "this version has no selective_scan_fn")
    return kernel


@functools.cache
def _conv_kernel() -> Callable | None:
    """`causal_conv1d`'s fused depthwise causal conv, or None where it cannot run here (logged once).

    The compiled `causal_conv1d_cuda` is imported explicitly, so a package whose Python layer
    imports without it never counts as available.
    """
    package = _import_optional("causal_conv1d", "causal-conv1d")
    if package is None or _import_optional("causal_conv1d_cuda", "causal-conv1d", compiled=True) is None:
        return None
    kernel = getattr(package, "causal_conv1d_fn", None)
    if kernel is None:
        _unavailable("causal-conv1d", "this version has no causal_conv1d_fn")
    return kernel


def mamba_kernels_available() -> bool:
    """True when both fused kernels of the optional `gpu` extra, compiled parts included, load here."""
    return _scan_kernel() is not None and _conv_kernel() is not None


# --- choosing a path ------------------------------------------------------------------------------


def _choose_kernel(
    name: str, probe: Callable[[], Callable | None], refusal: str | None, on_cuda: bool, use_kernel: bool | None
) -> Callable | None:
    """The kernel to run, or None for the PyTorch path.

    `use_kernel`: None takes the kernel when it can run these inputs, True insists (raises saying
    why not), False forbids. `refusal` is why the kernel cannot take these inputs (None: it can).
    The probe, which imports the kernel package, runs only for CUDA inputs the kernel accepts.
    """
    if use_kernel is False:
        return None
    reason = "the tensors are not on CUDA" if not on_cuda else refusal
    kernel = probe() if reason is None else None
    if reason is None and kernel is None:
        reason = f"it is not usable here (the log says why); {GPU_EXTRA_HINT}"
    if use_kernel and kernel is None:
        raise RuntimeError(f"the {name} CUDA kernel was requested but {reason}")
    return kernel


def _dtype_refusal(expected: torch.dtype | tuple[torch.dtype, ...], **tensors: torch.Tensor | None) -> str | None:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    for name, tensor in tensors.items():
        if tensor is not None and tensor.dtype not in allowed:
            return f"{name} is {tensor.dtype} and the kernel takes {' or '.join(map(str, allowed))}"
    return None


def _scan_refusal(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> str | None:
    """Why `selective_scan_fn` cannot take these inputs, or None. Mirrors the checks of its C++
    entry point, which would raise where the PyTorch path can serve (e.g. float64)."""
    tensors = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    if any(t is not None and t.device != u.device for t in tensors.values()):
        return "its inputs are on different devices"
    if A.shape[1] > 256:
        return f"the state size is {A.shape[1]} and the kernel supports at most 256"
    return (
        _dtype_refusal(KERNEL_DTYPES, u=u)
        or _dtype_refusal(u.dtype, delta=delta, B=B, C=C, z=z)  # all in the activations' dtype
        or _dtype_refusal(torch.float32, A=A, D=D, delta_bias=delta_bias)  # state-space parameters
    )


def _conv_refusal(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> str | None:
    """Why `causal_conv1d_fn` cannot take these inputs, or None (its C++ checks, as for the scan)."""
    if weight.device != x.device or (bias is not None and bias.device != x.device):
        return "its inputs are on different devices"
    if not 2 <= weight.shape[1] <= 4:
        return f"the filter width is {weight.shape[1]} and the kernel supports 2 to 4"
    return _dtype_refusal(KERNEL_DTYPES, x=x, weight=weight) or _dtype_refusal(weight.dtype, bias=bias)


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
    usable and takes these inputs (CUDA tensors; u, delta, B, C, z in float32/float16/bfloat16;
    A, D, delta_bias in float32), True requires it, False forces the PyTorch path.
    """
    _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    refusal = _scan_refusal(u, delta, A, B, C, D, z, delta_bias)
    kernel = _choose_kernel("mamba_ssm selective scan", _scan_kernel, refusal, u.is_cuda, use_kernel)
    if kernel is not None:
        return kernel(u, delta, A, B.contiguous(), C.contiguous(), D, z, delta_bias, delta_softplus)
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
    `use_kernel` as for `selective_scan`; the kernel takes CUDA tensors in float32/float16/bfloat16,
    a bias in the weight's dtype and widths 2 to 4.
    """
    if x.ndim != 3 or weight.ndim != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"causal conv1d: need x [batch, dim, length] and weight [dim, width] with the same dim, "
            f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        )
    if activation not in (None, "silu"):
        raise ValueError(f"causal conv1d: activation must be None or 'silu', got {activation!r}")
    refusal = _conv_refusal(x, weight, bias)
    kernel = _choose_kernel("causal_conv1d", _conv_kernel, refusal, x.is_cuda, use_kernel)
    if kernel is not None:
        return kernel(x.contiguous(), weight.contiguous(), bias, activation=activation)
    dtype = _compute_dtype(x, weight, bias)  # like the kernel: accumulate and activate in float32
    width = weight.shape[1]
    padded = F.pad(x.to(dtype), (width - 1, 0))
    out = F.conv1d(padded, weight.to(dtype).unsqueeze(1), None if bias is None else bias.to(dtype), groups=x.shape[1])
    return (F.silu(out) if activation == "silu" else out).to(x.dtype)
