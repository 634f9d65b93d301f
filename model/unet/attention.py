"""Multi-head attention and feed-forward layers shared by every transformer in the UNet.

All attention goes through `torch.nn.functional.scaled_dot_product_attention` with its default
scale 1/sqrt(head_dim) and no mask, which is what the original computes with xformers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# CUDA attention kernels put the batch on a grid axis limited to 65535 blocks; the temporal layers
# attend at every pixel, so at high resolutions the batch (B * H * W) can pass that limit.
_MAX_KERNEL_BATCH = 65535


def multihead_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V per head. q: [N, Lq, heads*d]; k, v: [N, Lk, heads*d] -> [N, Lq, heads*d]."""
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    if q.shape[0] <= _MAX_KERNEL_BATCH:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        chunks = zip(*(t.split(_MAX_KERNEL_BATCH) for t in (q, k, v)))
        out = torch.cat([F.scaled_dot_product_attention(*chunk) for chunk in chunks])
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Self-attention, or cross-attention when a context is given (separate q/k/v projections)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        # A one-layer Sequential so that the checkpoint key is `to_out.0.*`, as in the original.
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        out = multihead_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class FusedQKVAttention(nn.Module):
    """Self-attention with one fused q/k/v projection (the condition adapters' layout)."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        return self.to_out(multihead_attention(q, k, v, self.heads))


class GEGLU(nn.Module):
    """Linear projection to twice the width, one half gating the other through GELU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """Two-layer MLP of width 4*dim, gated (GEGLU) in the UNet transformers, plain GELU in the adapters.

    `net` keeps the original's three slots (input projection, dropout, output projection) so the
    checkpoint keys `net.0.*` and `net.2.*` line up.
    """

    def __init__(self, dim: int, dim_out: int | None = None, gated: bool = False, dropout: float = 0.0):
        super().__init__()
        inner_dim = 4 * dim
        project_in = GEGLU(dim, inner_dim) if gated else nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU())
        self.net = nn.Sequential(project_in, nn.Dropout(dropout), nn.Linear(inner_dim, dim_out or dim))
        # Feed-forward acts on each token alone, so it can run over the tokens a slice at a time:
        # the 4*dim-wide hidden layer (the UNet's largest activation) then never exists for all
        # tokens at once. 0 = all at once. Set by `chunk_feed_forward`.
        self.chunk_tokens = 0

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.shape[:-1].numel()
        if not self.chunk_tokens or tokens <= self.chunk_tokens:
            return self.net(x)
        flat = x.reshape(tokens, x.shape[-1])
        out = flat.new_empty(tokens, self.net[-1].out_features)
        for start in range(0, tokens, self.chunk_tokens):
            out[start:start + self.chunk_tokens] = self.net(flat[start:start + self.chunk_tokens])
        return out.reshape(*x.shape[:-1], out.shape[-1])


def chunk_feed_forward(module: nn.Module, tokens: int) -> None:
    """Run every feed-forward inside `module` over at most `tokens` tokens at a time (0: all at once).
    Same results (each token is computed alone either way), a fraction of the peak memory."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    for layer in module.modules():
        if isinstance(layer, FeedForward):
            layer.chunk_tokens = tokens
