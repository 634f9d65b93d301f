"""Opt-in `torch.compile` of the UNet backbone and the VAE decoder, with a CUDA-graph mode.

Modes (`COMPILE_MODES`, the worker setting's values):

- "off": eager PyTorch (the default; nothing to warm up).
- "default": inductor kernels (fused elementwise ops, tuned matmuls), no CUDA graphs.
- "reduce-overhead": as "default", and on CUDA the UNet backbone replays as a CUDA graph, so a
  denoising step costs one graph launch instead of thousands of kernel launches. On a CPU it is
  "default" (inductor makes no CUDA graphs there), which is how its logic is tested without a GPU.

Only `UniAnimateUNet.backbone` is compiled: it has one fixed shape for a whole segment and no host
logic. The condition encoders in `forward` read the guidance row mask on the host and run eagerly
(they are a few percent of the FLOPs). The first call of each shape compiles (tens of seconds on
a GPU for the released model): compile once per worker process, then render many segments.

CUDA graphs reuse their output memory on the next replay. The compiled backbone therefore marks a
new step before every call and returns a copy of its output ([B, 4, F, h, w], a few MB), so that
callers may hold results across calls, as two-call guidance does.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

COMPILE_MODES = ("off", "default", "reduce-overhead")


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    return mode


def compile_unet(unet: nn.Module, mode: str) -> None:
    """Replaces `unet.backbone` by its compiled form, in place; "off" leaves the model eager.

    The parameters and the state dict are untouched (only an instance attribute shadows the method).
    """
    if check_compile_mode(mode) == "off":
        return
    compiled = torch.compile(unet.backbone, mode=mode, dynamic=False)
    unet.backbone = _graph_safe(compiled) if mode == "reduce-overhead" else compiled


def compile_vae_decoder(vae: nn.Module, mode: str) -> None:
    """Compiles the VAE's decoder in place. Never as CUDA graphs: chunks of frames are decoded one
    after another and the last chunk may be shorter, so graphs would buy little and cost memory."""
    if check_compile_mode(mode) == "off":
        return
    vae.decoder.compile(mode="default", dynamic=False)


def is_compiled(unet: nn.Module) -> bool:
    return "backbone" in vars(unet)


def _graph_safe(compiled: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def backbone(h: Tensor, t: Tensor, context: Tensor, num_frames: int) -> Tensor:
        # A new step: the graphs may now reuse the memory of earlier outputs, which is safe because
        # every earlier output was copied out below.
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(h, t, context, num_frames).clone()

    return backbone
