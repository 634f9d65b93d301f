"""Temporal Mamba: a bidirectional selective-state-space block over the frame axis.

A drop-in alternative to the UNet's temporal transformer (UniAnimate paper, "temporal Mamba"):
where the transformer lets every frame attend to every other frame at each spatial position
(memory quadratic in frames), this block runs a Mamba scan along the frames at each position,
once forwards and once on the time-reversed sequence, so memory grows linearly with frames.

The outer structure is the temporal transformer's, so the block sits in the same place with
the same interface ([B, C, F, H, W] in and out):

    GroupNorm(32) -> 1x1 Conv1d proj_in -> depth x BidirectionalMambaLayer -> 1x1 Conv1d proj_out -> + x

Each `MambaMixer` uses exactly the parameter names and shapes of `mamba_ssm.modules.mamba_simple.Mamba`
(v1), so weights trained with mamba-ssm load directly; docs/mamba.md lists the full state-dict layout.
No Mamba UniAnimate weights are published: this is an architecture option for user checkpoints.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from model.unet.selective_scan import causal_conv1d, selective_scan
from model.unet.temporal import TemporalBlock


class MambaMixer(nn.Module):
    """One direction of Mamba mixing over [N, L, d_model] sequences (Mamba v1 parameterisation).

    in_proj splits into a signal x and a gate z; x goes through a causal depthwise conv and SiLU,
    then x_proj makes the input-dependent step size (low-rank, expanded by dt_proj) and B, C of
    the selective scan; the scan output, gated by SiLU(z), is projected back by out_proj.
    """

    def __init__(
        self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        # Holds the depthwise filter ([d_inner, 1, d_conv]) under mamba-ssm's key; it is applied
        # causally by `causal_conv1d`, never through nn.Conv1d.forward.
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_ssm_parameters()
        self.register_load_state_dict_pre_hook(_upcast_ssm_entries)

    def ssm_parameters(self) -> list[nn.Parameter]:
        """A_log, D and the step-size bias: the parameters kept in float32 under half precision.

        They set the decay exp(delta * A) that compounds over every frame, so rounding them to
        half precision (as .half() or an fp16 checkpoint would) shifts the whole scan; mamba-ssm
        keeps them in float32 for the same reason, and its kernel insists on float32 D and bias.
        """
        return [self.A_log, self.D, self.dt_proj.bias]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MambaMixer:
        # Every .to()/.half()/.cuda() goes through here: convert as asked, except that a cast of
        # the state-space parameters to a half dtype is replaced by a float32 copy of the original
        # (not of the rounded result), on the device asked for.
        kept = {id(t) for p in self.ssm_parameters() for t in (p, p.grad) if t is not None}

        def convert(tensor: torch.Tensor) -> torch.Tensor:
            converted = fn(tensor)
            if id(tensor) in kept and converted.dtype in _HALF_DTYPES:
                return tensor.to(device=converted.device, dtype=torch.float32)
            return converted

        return super()._apply(convert, recurse)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's initialisation of the state-space parameters (the linear layers keep PyTorch's).

        A = -[1..N] for every channel (stored as its log); D = 1; the step-size bias is the inverse
        softplus of a step drawn log-uniformly in [dt_min, dt_max], so softplus(bias) starts there.
        """
        states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(states).expand(self.d_inner, -1))
        self.D.fill_(1.0)
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # each [N, d_inner, L]
        x = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")

        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias is added inside the scan
        # The state-space parameters enter the scan in at least float32, as mamba-ssm passes them.
        ssm_dtype = torch.promote_types(hidden.dtype, torch.float32)
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.to(ssm_dtype)),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.to(ssm_dtype),
            z=z,
            delta_bias=self.dt_proj.bias.to(ssm_dtype),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _upcast_ssm_entries(module: MambaMixer, state_dict: dict, prefix: str, *_: object) -> None:
    """Load-time counterpart of `MambaMixer._apply`: half-precision A_log, D and dt_proj.bias from
    a checkpoint are adopted as float32 (a meta-device model adopts tensors as they are)."""
    for key in ("A_log", "D", "dt_proj.bias"):
        tensor = state_dict.get(prefix + key)
        if isinstance(tensor, torch.Tensor) and tensor.dtype in _HALF_DTYPES:
            state_dict[prefix + key] = tensor.float()


class BidirectionalMambaLayer(nn.Module):
    """Pre-norm residual layer that scans the frames both ways with separate weights.

    `mixer_forward` reads frames 0..F-1, `mixer_reverse` reads F-1..0 (its output is flipped back);
    the two are averaged. Separate weights let each direction specialise; averaging keeps the
    residual update at the scale of a single Mamba block. Swapping the two mixers' weights and
    reversing the input reverses the output exactly.
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer_forward = MambaMixer(dim, d_state, d_conv, expand)
        self.mixer_reverse = MambaMixer(dim, d_state, d_conv, expand)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        normed = self.norm(hidden)
        forward = self.mixer_forward(normed)
        reverse = self.mixer_reverse(normed.flip(1)).flip(1)
        return hidden + 0.5 * (forward + reverse)


class TemporalMamba(TemporalBlock):
    """Bidirectional Mamba over the frame axis at every spatial position; x: [B, C, F, H, W].

    Mirrors the temporal transformer it replaces: GroupNorm(32, eps 1e-6), 1x1 Conv1d proj_in to
    `inner_dim`, `depth` layers on the B*H*W sequences of F frames, 1x1 Conv1d proj_out, plus the
    input as residual. proj_out starts at zero, as in the original UniAnimate/VideoComposer
    `TemporalTransformer` (`zero_module(nn.Conv1d(...))`), so a fresh block is the identity and a
    Mamba UNet assembled from the released non-temporal weights starts as that model without
    temporal mixing. (This repo's `TemporalTransformer` skips that init: it is only ever filled
    from the released checkpoint.)
    """

    def __init__(
        self,
        channels: int,
        inner_dim: int | None = None,
        depth: int = 1,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        inner_dim = inner_dim or channels
        if channels % norm_groups:
            raise ValueError(f"TemporalMamba: channels ({channels}) must be a multiple of norm_groups ({norm_groups})")
        self.channels = channels
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv1d(channels, inner_dim, kernel_size=1)
        self.layers = nn.ModuleList(
            BidirectionalMambaLayer(inner_dim, d_state, d_conv, expand) for _ in range(depth)
        )
        self.proj_out = nn.Conv1d(inner_dim, channels, kernel_size=1)
        # Zero, so that training from a transformer-free start begins at the identity (see above).
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(
                f"TemporalMamba expects [batch, {self.channels}, frames, height, width], got {tuple(x.shape)}"
            )
        b, c, f, h, w = x.shape
        # One sequence of F frames per pixel: [B, C, F, H, W] -> [B*H*W, C, F].
        sequences = self.norm(x).permute(0, 3, 4, 1, 2).reshape(b * h * w, c, f)
        hidden = self.proj_in(sequences).transpose(1, 2)  # [B*H*W, F, inner]
        for layer in self.layers:
            hidden = layer(hidden)
        out = self.proj_out(hidden.transpose(1, 2))  # [B*H*W, C, F]
        return x + out.reshape(b, h, w, c, f).permute(0, 3, 4, 1, 2)
