"""Sliding-window sampling for clips longer than the model's context (the original's DiffusionDDIMLong).

At every denoising step the clip is cut into overlapping windows of `context_size` frames, the model
predicts v for each window (conditional and unconditional, with the conditions sliced to the
window), the predictions are averaged per frame over the windows that cover it, and the guided
average drives one ordinary DDIM step over the whole clip.

The windows are planned once: the original calls its context scheduler with the step hard-coded to
0, so they never shift between steps. Where the original's plan is sound we reproduce it exactly
(every clip longer than the context at stride 1, and the dilated passes whose windows fit in the
clip). Where it is not we do the obvious right thing instead (docs/sampler.md lists both):
- a clip of at most `context_size` frames is one window of all its frames (the original wraps and
  repeats frames, raises ValueError, or leaves frames uncovered and returns NaN);
- no window wraps around from the last frame to frame 0: each dilation pass ends with a window
  aligned to the end of the clip (the original does that for the very last window only, at a
  dilation that may not belong to any pass), and a pass whose dilated window is longer than the
  clip is skipped (the original wraps it around and repeats frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from model.sampler import (
    CancelFn,
    Conditions,
    ModelFn,
    ProgressFn,
    VelocityFn,
    guide,
    predict_cond_uncond,
    run_ddim,
)
from model.schedule import NoiseSchedule

# How each conditioning input is cut into windows. Inputs have their frame axis at dim 2.
FRAME_CONDITIONS = frozenset({"randomref", "local_image"})  # [B,C,F,...]: the window's frames
POSE_CONDITIONS = frozenset({"dwpose"})  # [B,C,F+1,...]: frame 0 is the reference pose, kept in front
# Any other input (CLIP `image`, text `y`, ...) describes the whole clip and is repeated per window.


def plan_windows(num_frames: int, size: int, overlap: int, stride: int = 1) -> list[list[int]]:
    """The frame windows the sampler visits at every step, in the order it visits them.

    Pass k (k < min(stride, ceil(log2(num_frames / size)) + 1)) takes `size` frames spaced 2**k
    apart, starting at 0, (size * 2**k - overlap), ... while the start is below num_frames - overlap;
    the window that would run past the end becomes range(num_frames - size * 2**k, num_frames, 2**k).
    Example: 22 frames, size 8, overlap 2 -> [0..7], [6..13], [12..19], [14..21].
    """
    _check_plan_args(num_frames, size, overlap, stride)
    if num_frames <= size:
        return [list(range(num_frames))]
    passes = min(stride, math.ceil(math.log2(num_frames / size)) + 1)
    windows: list[list[int]] = []
    for dilation in (1 << k for k in range(passes)):
        if size * dilation > num_frames:
            break
        windows += _dilated_windows(num_frames, size, overlap, dilation)
    return windows


def _dilated_windows(num_frames: int, size: int, overlap: int, dilation: int) -> list[list[int]]:
    span = size * dilation
    windows = []
    for start in range(0, num_frames - overlap, span - overlap):
        if start + span - dilation >= num_frames:
            # The original wraps this window around to frame 0; end-align it instead, as the
            # original does for its final window.
            windows.append(list(range(num_frames - span, num_frames, dilation)))
            break
        windows.append(list(range(start, start + span, dilation)))
    return windows


def _check_plan_args(num_frames: int, size: int, overlap: int, stride: int) -> None:
    if num_frames < 1:
        raise ValueError(f"the clip needs at least one frame, got {num_frames}")
    if size < 1:
        raise ValueError(f"context_size must be at least 1, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"context_overlap must be in 0..context_size-1 ({size - 1}), got {overlap}")
    if stride < 1:
        raise ValueError(f"context_stride must be at least 1, got {stride}")


def coverage_counts(windows: Sequence[Sequence[int]], num_frames: int) -> list[int]:
    """How many windows contain each frame (the divisor of the per-frame average)."""
    counts = [0] * num_frames
    for window in windows:
        for frame in window:
            counts[frame] += 1
    return counts


def batch_windows(windows: Sequence[Sequence[int]], batch_size: int) -> list[list[list[int]]]:
    """Consecutive groups of `batch_size` windows; each group is one pair of model calls."""
    if batch_size < 1:
        raise ValueError(f"context_batch_size must be at least 1, got {batch_size}")
    return [list(map(list, windows[i : i + batch_size])) for i in range(0, len(windows), batch_size)]


def window_conditions(kwargs: Conditions, windows: Sequence[torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """The model inputs for a batch of windows (frame index tensors), stacked window-major on dim 0."""
    sliced: dict[str, torch.Tensor | None] = {}
    for key, value in kwargs.items():
        if value is None:
            sliced[key] = None
        elif key in POSE_CONDITIONS:
            reference = torch.zeros(1, dtype=torch.long, device=value.device)
            sliced[key] = torch.cat([value.index_select(2, torch.cat([reference, w + 1])) for w in windows])
        elif key in FRAME_CONDITIONS:
            sliced[key] = torch.cat([value.index_select(2, w) for w in windows])
        else:
            sliced[key] = value.repeat(len(windows), *([1] * (value.ndim - 1)))
    return sliced


def check_conditions(kwargs: Conditions, batch: int, num_frames: int) -> None:
    """Rejects inputs whose batch or frame count does not fit the latent, saying which one."""
    for key, value in kwargs.items():
        if value is None:
            continue
        if value.shape[0] != batch:
            raise ValueError(f"condition {key!r} has batch {value.shape[0]}, the latent has {batch}")
        expected = num_frames + 1 if key in POSE_CONDITIONS else num_frames
        if key in POSE_CONDITIONS | FRAME_CONDITIONS and (value.ndim < 3 or value.shape[2] != expected):
            raise ValueError(
                f"condition {key!r} must have {expected} frames on dim 2 "
                f"(shape [B,C,F,...]), got shape {tuple(value.shape)}"
            )


def window_velocity(
    model_fn: ModelFn,
    windows: Sequence[Sequence[int]],
    *,
    guidance_scale: float,
    cond_kwargs: Conditions,
    uncond_kwargs: Conditions,
    context_batch_size: int = 1,
    batch_cond_uncond: bool = False,
) -> VelocityFn:
    """The guided velocity of a whole clip, assembled from per-window model calls.

    Per batch of windows: conditional then unconditional call (or one batched call), t repeated per
    window. The conditional and unconditional outputs are each averaged per frame over the windows
    covering it (plain average, as the original), then guided.
    """
    batches = batch_windows(windows, context_batch_size)
    # Frame indices are copied to the latent's device once, not every step (on CUDA each copy of a
    # host list waits for the GPU).
    on_device: dict[torch.device, list[list[torch.Tensor]]] = {}

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond_sum, uncond_sum = torch.zeros_like(x_t), torch.zeros_like(x_t)
        counts = torch.zeros(x_t.shape[2], dtype=x_t.dtype, device=x_t.device)
        rows = x_t.shape[0]
        if x_t.device not in on_device:
            on_device[x_t.device] = [[torch.tensor(w, dtype=torch.long, device=x_t.device) for w in batch]
                                     for batch in batches]
        for batch, index in zip(batches, on_device[x_t.device]):
            x_windows = torch.cat([x_t.index_select(2, w) for w in index])
            cond, uncond = predict_cond_uncond(
                model_fn,
                x_windows,
                t.repeat(len(batch)),
                window_conditions(cond_kwargs, index),
                window_conditions(uncond_kwargs, index),
                batch_cond_uncond,
            )
            for w, cond_w, uncond_w in zip(index, cond.split(rows), uncond.split(rows)):
                cond_sum.index_add_(2, w, cond_w)
                uncond_sum.index_add_(2, w, uncond_w)
                counts.index_add_(0, w, torch.ones_like(w, dtype=x_t.dtype))
        counts = counts.view(1, 1, -1, *([1] * (x_t.ndim - 3)))
        return guide(cond_sum / counts, uncond_sum / counts, guidance_scale)

    return velocity


def window_ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int,
    guidance_scale: float,
    cond_kwargs: Conditions,
    uncond_kwargs: Conditions,
    context_size: int,
    context_overlap: int,
    context_stride: int = 1,
    context_batch_size: int = 1,
    batch_cond_uncond: bool = False,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """Guided DDIM (eta 0) over a clip of any length x_T [B,C,F,H,W], window by window.

    Conditions have their frame axis at dim 2: `randomref`/`local_image` F frames, `dwpose` F + 1
    (reference pose first); others (e.g. `image`) are per clip. progress/should_cancel as in
    model.sampler.ddim_sample. context_batch_size and batch_cond_uncond change speed, not results.
    """
    if x_T.ndim != 5:
        raise ValueError(f"the latent must be [B,C,F,H,W], got shape {tuple(x_T.shape)}")
    batch, _, num_frames = x_T.shape[:3]
    check_conditions(cond_kwargs, batch, num_frames)
    check_conditions(uncond_kwargs, batch, num_frames)
    windows = plan_windows(num_frames, context_size, context_overlap, context_stride)
    velocity = window_velocity(
        model_fn,
        windows,
        guidance_scale=guidance_scale,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        context_batch_size=context_batch_size,
        batch_cond_uncond=batch_cond_uncond,
    )
    return run_ddim(
        velocity, x_T, schedule, num_steps=num_steps, progress=progress, should_cancel=should_cancel
    )
