"""FLOPs of one UNet forward, counted by PyTorch's FlopCounterMode on the meta device (no compute, no
memory), and MFU: the share of the device's dense half-precision peak that a run achieved."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import UNetConfig
from model.unet import UniAnimateUNet
from model.unet.examples import example_inputs

# Dense (no sparsity) fp16/bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets.
PEAK_HALF_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362.05e12, "A10": 125e12}


@torch.no_grad()
def unet_forward_flops(config: UNetConfig, frames: int, height: int, width: int, rows: int = 1) -> int:
    """Matmul, convolution and attention FLOPs of one forward on `rows` rows of `frames` frames, every
    condition given (the condition encoders are counted for all rows: an upper bound when batched)."""
    with torch.device("meta"):
        unet = UniAnimateUNet(config).eval()
    unet.set_zero_y(torch.empty(1, 77, config.context_dim, device="meta"))
    inputs = {k: v.to("meta") for k, v in example_inputs(config, frames, height, width, batch=rows).items()}
    with FlopCounterMode(display=False) as counter:
        unet(**inputs)
    return counter.get_total_flops()


def peak_flops(device_name: str) -> float | None:
    """The data-sheet half-precision peak of a device named like torch.cuda.get_device_name, if known."""
    for key, flops in PEAK_HALF_FLOPS.items():
        if key in device_name:
            return flops
    return None
