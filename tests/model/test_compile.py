"""torch.compile of the UNet backbone (model/compile.py) on the CPU's inductor backend.

Compiling the tiny UNet takes about a minute on two CPU cores, so the test that compiles is marked
slow; the mode checks run always.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from model.compile import COMPILE_MODES, compile_unet, is_compiled
from model.config import UNetConfig
from model.pipeline import UniAnimatePipeline
from model.unet import UniAnimateUNet
from model.unet.examples import example_inputs


def test_unknown_mode_is_refused_and_off_stays_eager():
    unet = UniAnimateUNet(UNetConfig.tiny())
    with pytest.raises(ValueError, match="reduce-overhead"):
        compile_unet(unet, "max-speed")
    compile_unet(unet, "off")
    assert not is_compiled(unet)
    pipeline = UniAnimatePipeline.tiny(seed=0)
    pipeline.compile("off")
    assert pipeline.compile_mode == "off" and not is_compiled(pipeline.unet)
    assert COMPILE_MODES == ("off", "default", "reduce-overhead")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
@torch.no_grad()
def test_compiled_unet_equals_eager_and_keeps_earlier_outputs():
    config = UNetConfig.tiny()
    torch.manual_seed(0)
    unet = UniAnimateUNet(config).eval()
    g = torch.Generator().manual_seed(0)
    unet.set_zero_y(torch.randn(1, 77, config.context_dim, generator=g))
    inputs = example_inputs(config, 4, 64, 64, batch=2, generator=g)
    mask = torch.tensor([False, True])  # batched guidance: conditional row, then unconditional
    keys = list(unet.state_dict())
    eager = unet(**inputs, unconditional=mask)
    other_t = {**inputs, "t": torch.tensor([3, 3])}
    eager_other = unet(**other_t, unconditional=mask)

    compile_unet(unet, "reduce-overhead")  # the CUDA-graph mode's logic; on a CPU no graphs are made
    assert is_compiled(unet) and list(unet.state_dict()) == keys
    compiled = unet(**inputs, unconditional=mask)
    compiled_other = unet(**other_t, unconditional=mask)  # a second call must not overwrite the first
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled_other, eager_other, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(compiled, compiled_other)
