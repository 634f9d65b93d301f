"""The memory planner against the tensors it models, measured on the CPU without an allocator.

`LiveBytes` follows every tensor the model creates, so its peak is the allocator-independent size
the planner predicts (CPU_CALIBRATION); the CUDA constants add the runtime's share on top and are
calibrated by bench/gpu_check.sh.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from model import memory_plan as plan
from model.architecture import Architecture
from model.config import UNetConfig
from model.unet import UniAnimateUNet
from model.unet.attention import chunk_feed_forward
from model.unet.examples import example_inputs
from model.vae import SD21_DDCONFIG, SD21_EMBED_DIM, TINY_DDCONFIG, build_vae, vae_config_from_ddconfig
from tests.model.live_bytes import LiveBytes

TINY = plan.ModelSizes(unet=UNetConfig.tiny(), vae_full_size_channels=TINY_DDCONFIG["ch"] * TINY_DDCONFIG["ch_mult"][1])


def test_the_planner_does_not_import_torch():
    code = "import sys, model.memory_plan as p; p.estimate_peak_bytes(768, 512, 32); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_released_sizes_are_the_modules_sizes():
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModelWithProjection

    from model.clip import VIT_H_14, vision_config

    with torch.device("meta"):  # counts only, nothing allocated
        modules = {
            "unet": UniAnimateUNet(UNetConfig.released()),
            "vae": AutoencoderKL(**vae_config_from_ddconfig(SD21_DDCONFIG, SD21_EMBED_DIM)),
            "clip": CLIPVisionModelWithProjection(vision_config(VIT_H_14)),
        }
    sizes = plan.ModelSizes()
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
    assert counts == {"unet": sizes.unet_parameters, "vae": sizes.vae_parameters, "clip": sizes.clip_parameters}
    assert sizes.vae_full_size_channels == SD21_DDCONFIG["ch"] * SD21_DDCONFIG["ch_mult"][1]


@torch.no_grad()
def test_skip_shapes_are_the_encoder_outputs(monkeypatch):
    from model.unet import unet as unet_module

    config = UNetConfig.tiny()
    unet = UniAnimateUNet(config).eval()
    unet.set_zero_y(torch.zeros(1, 77, config.context_dim))
    blocks, seen, apply = {id(b) for b in unet.input_blocks}, [], unet_module._apply

    def recording(layer, *args):
        out = apply(layer, *args)
        if id(layer) in blocks:
            seen.append(tuple(out.shape[1:]))
        return out

    monkeypatch.setattr(unet_module, "_apply", recording)
    unet(**example_inputs(config, 2, 64, 32))
    assert seen == [(c, 8 // s, 4 // s) for c, s in plan.skip_shapes(config)]


@pytest.mark.parametrize(("frames", "height", "width", "batched", "ff_chunk"), [
    (8, 128, 96, True, 0), (3, 256, 192, False, 0), (4, 256, 256, True, 0),
    # feed-forward in chunks: partly (the chunk still the widest layer), then the attention's turn
    (8, 128, 96, True, 1024), (3, 256, 192, False, 1024), (4, 256, 256, True, 256), (2, 512, 512, False, 64)])
@torch.no_grad()
def test_unet_activations_match_the_live_tensors(frames, height, width, batched, ff_chunk):
    config = UNetConfig.tiny()
    torch.manual_seed(0)
    unet = UniAnimateUNet(config).eval()
    chunk_feed_forward(unet, ff_chunk)
    unet.set_zero_y(torch.randn(1, 77, config.context_dim))
    rows = 2 if batched else 1
    inputs = example_inputs(config, frames, height, width, batch=rows)
    mask = {"unconditional": torch.tensor([False, True])} if batched else {}
    with LiveBytes() as whole:
        del_output(unet(**inputs, **mask))
    x, t = inputs.pop("x"), inputs.pop("t")
    given = {**inputs, "reference_pose": inputs["dwpose"][:, :, :1], "dwpose": inputs["dwpose"][:, :, 1:]}
    h, context = unet._condition_features(x, given)
    with LiveBytes() as backbone:
        del_output(unet.backbone(h, t, context, frames + 1))
    args = (height, width, frames, "fp32", batched, TINY, plan.CPU_CALIBRATION)
    assert backbone.peak == pytest.approx(plan.backbone_activation_bytes(*args, ff_chunk_tokens=ff_chunk), rel=0.05)
    if ff_chunk:  # the whole-UNet check below is for the unchunked default of these small sizes
        return
    assert whole.peak == pytest.approx(plan.unet_activation_bytes(*args), rel=0.05)


def del_output(output: torch.Tensor) -> None:
    """Drop the result inside the measured block (it is the caller's, not a working tensor)."""
    del output


@pytest.mark.parametrize("chunk", [1, 2, 3])
@torch.no_grad()
def test_decode_activations_match_the_live_tensors(chunk):
    vae = build_vae(ddconfig=TINY_DDCONFIG)
    height, width = 128, 96
    with LiveBytes() as live:
        del_output(vae.decode(torch.randn(chunk, 4, height // 8, width // 8)).sample)
    cal = plan.CPU_CALIBRATION
    predicted = chunk * cal.decode_working_tensors * cal.decode_bytes * TINY.vae_full_size_channels * height * width
    assert live.peak == pytest.approx(predicted, rel=0.05)
    # the same term inside the decode phase: weights + inputs + the chunk's activations
    phases = [plan.phase_bytes(height, width, 6, dtype="fp32", decode_chunk=c, sizes=TINY, calibration=cal)["decode"]
              for c in (chunk, chunk + 1)]
    assert phases[1] - phases[0] == pytest.approx(predicted / chunk, rel=1e-6)


def test_weights_are_the_tiny_pipelines_parameter_bytes():
    from model.pipeline import UniAnimatePipeline

    pipeline = UniAnimatePipeline.tiny(seed=0)
    count = {name: sum(p.numel() for p in getattr(pipeline, name).parameters())
             for name in ("unet", "vae", "image_encoder")}
    sizes = plan.ModelSizes(unet=UNetConfig.tiny(), unet_parameters=count["unet"], unet_buffer_bytes=0,
                            vae_parameters=count["vae"], clip_parameters=count["image_encoder"])
    cal = plan.Calibration(feed_forward_tensors=0, stream_tensors=0, encoder_working_tensors=0,
                           decode_working_tensors=0)
    phases = plan.phase_bytes(64, 64, 1, dtype="fp32", batch_guidance=False, sizes=sizes, calibration=cal)
    inputs = plan.segment_input_bytes(64, 64, 1, "fp32", sizes)
    weights = sum(p.numel() * p.element_size() for name in count for p in getattr(pipeline, name).parameters())
    assert phases["sampling"] - inputs - plan.unet_activation_bytes(64, 64, 1, "fp32", False, sizes, cal) == weights
    offloaded = plan.phase_bytes(64, 64, 1, dtype="fp32", batch_guidance=False, cpu_offload=True, sizes=sizes,
                                 calibration=cal)
    assert phases["sampling"] - offloaded["sampling"] == 4 * (count["vae"] + count["image_encoder"])


def test_estimates_move_the_right_way_and_the_plan_fits_its_budget():
    est = plan.estimate_peak_bytes
    base = est(768, 512, 32)
    assert est(768, 512, 32, batch_guidance=False) < base
    assert est(768, 512, 32, cpu_offload=True) < base
    assert est(768, 512, 16) < base < est(1024, 768, 32)
    assert est(768, 512, 32, dtype="fp32") > base
    for budget_gib in (10, 12, 16, 80):
        chosen = plan.choose_plan(budget_gib * plan.GIB, 768, 512, 32)
        assert chosen is not None and chosen.peak_bytes <= budget_gib * plan.GIB
        assert chosen.peak_bytes == est(768, 512, 32, batch_guidance=chosen.batch_guidance,
                                        cpu_offload=chosen.cpu_offload, decode_chunk=chosen.decode_chunk)
    roomy = plan.choose_plan(80 * plan.GIB, 768, 512, 32)
    assert (roomy.cpu_offload, roomy.batch_guidance, roomy.decode_chunk) == (False, True, 8)
    assert plan.choose_plan(2 * plan.GIB, 768, 512, 32) is None  # the fp16 UNet alone is 2.8 GB
    with pytest.raises(ValueError, match="multiples of 8"):
        est(100, 512, 32)
    with pytest.raises(ValueError, match="dtype"):
        est(768, 512, 32, dtype="int8")


def test_architecture_latent_scale_is_the_planners():
    assert Architecture.released().latent_scale == plan.ModelSizes().latent_scale


@torch.no_grad()
def test_feed_forward_in_chunks_gives_the_same_output():
    config = UNetConfig.tiny()
    torch.manual_seed(0)
    unet = UniAnimateUNet(config).eval()
    unet.set_zero_y(torch.randn(1, 77, config.context_dim))
    inputs = example_inputs(config, 4, 128, 96, batch=2)
    outputs = []
    for tokens in (0, 1000, 97):  # all at once; chunks; chunks that do not divide the token count
        chunk_feed_forward(unet, tokens)
        outputs.append(unet(**inputs))
    assert all(torch.allclose(out, outputs[0], rtol=0, atol=1e-6) for out in outputs[1:])


def test_the_released_segment_fits_twelve_gib_with_batched_guidance():
    """Issue 11's memory target, as the planner predicts it (bench/gpu_check.sh measures it)."""
    chosen = plan.choose_plan(12 * plan.GIB, 768, 512, 32, dtype="fp16")
    assert chosen is not None and chosen.batch_guidance and not chosen.cpu_offload
