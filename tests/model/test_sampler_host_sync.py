"""The denoising loop never makes the host wait for the device (issue 11: keep the GPU busy).

The loop runs on the meta device: tensors with shapes and no values. Reading a value on the host
(`.item()`, `bool(t)`, `.tolist()` of a device tensor) fails there, so finishing proves the loop
never does it; a dispatch mode counts host-to-device copies, which on CUDA also wait for the GPU.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model.config import UNetConfig
from model.sampler import ddim_sample
from model.schedule import NoiseSchedule
from model.unet import UniAnimateUNet
from model.unet.examples import example_inputs
from model.window import window_ddim_sample

SCHEDULE = NoiseSchedule.linear_sd()


class HostTraffic(TorchDispatchMode):
    """Counts copies from the CPU to another device and value reads of non-CPU tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.copies_to_device = 0
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("_to_copy", "copy_"):
            src = args[0] if name == "_to_copy" else args[1]
            dst_device = kwargs.get("device") if name == "_to_copy" else args[0].device
            if src.device.type == "cpu" and dst_device is not None and torch.device(dst_device).type != "cpu":
                self.copies_to_device += 1
        if name in ("_local_scalar_dense", "item") and args[0].device.type != "cpu":
            self.reads += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def meta_unet():
    config = UNetConfig.tiny()
    with torch.device("meta"):
        unet = UniAnimateUNet(config).eval()
    unet.set_zero_y(torch.empty(1, 77, config.context_dim, device="meta"))
    inputs = {k: v.to("meta") for k, v in example_inputs(config, 4, 64, 64).items()}
    x_T = inputs.pop("x")
    inputs.pop("t")
    return unet, x_T, inputs


def traffic(sample, num_steps: int) -> HostTraffic:
    with torch.no_grad(), HostTraffic() as mode:
        out = sample(num_steps)
    assert out.device.type == "meta"
    return mode


@pytest.mark.parametrize("batched", [False, True])
def test_guided_ddim_with_the_unet_reads_nothing_back_and_copies_nothing_per_step(meta_unet, batched):
    unet, x_T, cond = meta_unet

    def sample(num_steps: int) -> torch.Tensor:
        return ddim_sample(lambda x, t, **c: unet(x, t, **c).float(), x_T, SCHEDULE, num_steps=num_steps,
                           guidance_scale=2.5, cond_kwargs=cond, uncond_kwargs={}, batch_cond_uncond=batched,
                           progress=lambda i, n: None, should_cancel=lambda: False)

    short, long = traffic(sample, 1), traffic(sample, 3)  # 1 and 4 visited timesteps
    assert short.reads == long.reads == 0
    # copies made once per run (the schedule tables) are fine; none may happen per step
    assert long.copies_to_device == short.copies_to_device <= 3


def test_window_sampler_copies_its_frame_indices_once(meta_unet, monkeypatch):
    _, x_T, cond = meta_unet
    made_on_device = []
    tensor = torch.tensor

    def counting_tensor(data, *args, **kwargs):  # torch.tensor(list, device=...) copies below dispatch
        if kwargs.get("device") is not None and torch.device(kwargs["device"]).type != "cpu":
            made_on_device.append(data)
        return tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting_tensor)

    def sample(num_steps: int) -> torch.Tensor:
        return window_ddim_sample(lambda x, t, **c: x * 0.5, x_T, SCHEDULE, num_steps=num_steps,
                                  guidance_scale=2.5, cond_kwargs=cond, uncond_kwargs={}, context_size=2,
                                  context_overlap=1, batch_cond_uncond=True)

    short = traffic(sample, 1)
    once = len(made_on_device)
    long = traffic(sample, 3)
    assert short.reads == long.reads == 0
    assert long.copies_to_device == short.copies_to_device
    assert once > 0 and len(made_on_device) == 2 * once  # per run, not per step


def test_the_counter_sees_a_per_step_copy():
    """The old way (a float64 CPU table indexed and moved every step) is what the counter catches."""
    x = torch.empty(1, 4, 2, 8, 8, device="meta")

    def sample(num_steps: int) -> torch.Tensor:
        out = x
        for t in range(num_steps):
            out = out * SCHEDULE.alphas_cumprod[t].to(dtype=x.dtype, device=x.device)
        return out

    assert traffic(sample, 6).copies_to_device == traffic(sample, 2).copies_to_device + 4
