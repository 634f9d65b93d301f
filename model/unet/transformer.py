"""The transformer block of the UNet and its spatial wrapper (attention over the pixels of a frame)."""
from __future__ import annotations

from torch import Tensor, nn

from model.unet.attention import Attention, FeedForward


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, then attention to `context`, then a GEGLU feed-forward.

    Without a context the second attention is a second self-attention (the temporal transformers
    use it that way). Submodules are registered in the original's order so state-dict keys match.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.ff = FeedForward(dim, gated=True)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Each frame's pixels attend to each other and cross-attend to the text + image context.

    x: [N, C, H, W] with frames folded into N; context: [N, L, context_dim].
    """

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        inner_dim = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner_dim, heads, head_dim, context_dim)])
        self.proj_out = nn.Linear(inner_dim, channels)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        _, _, height, width = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # [N, H*W, inner]
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        tokens = self.proj_out(tokens)
        return x + tokens.transpose(1, 2).unflatten(2, (height, width))
