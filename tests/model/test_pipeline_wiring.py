"""What the pipeline hands the UNet, checked call by call against the original's inference recipe.

A recording wrapper around the tiny UNet sees every call of the sampler; each expectation below is
computed independently from the inputs (PIL resizing, the schedule's tables), not by the pipeline.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import model.pipeline as pipeline_module
from model.architecture import Architecture
from model.pipeline import UniAnimatePipeline
from model.schedule import NoiseSchedule, ddim_timesteps
from model.vae import decode_latent

SIZE = 64
STEPS = 2
NOISE_PRIOR_T = 939
SEED = 5


class RecordingUNet(torch.nn.Module):
    """Passes every call through to the real UNet and keeps a copy of its arguments."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.inner = unet
        self.calls: list[tuple[torch.Tensor, torch.Tensor, dict]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, **conditions) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone(), {k: v.clone() for k, v in conditions.items()}))
        return self.inner(x, t, **conditions)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    ref_pose = rng.integers(0, 256, (120, 80, 3), dtype=np.uint8)
    poses = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    first_frame = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    return image, ref_pose, poses, first_frame


def recorded_run(pipeline: UniAnimatePipeline, inputs, first_frame=None):
    image, ref_pose, poses, _ = inputs
    ref = pipeline.prepare_reference(image, ref_pose, SIZE, SIZE)
    recorder = RecordingUNet(pipeline.unet)
    real_unet, pipeline.unet = pipeline.unet, recorder
    try:
        frames = pipeline.render_segment(ref, poses, first_frame, seed=SEED, steps=STEPS, guidance_scale=2.5,
                                         noise_prior_t=NOISE_PRIOR_T)
    finally:
        pipeline.unet = real_unet
    return ref, recorder.calls, frames


@pytest.fixture(scope="module")
def run(inputs):
    return recorded_run(UniAnimatePipeline.tiny(seed=0), inputs, first_frame=inputs[3])


def unit(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)


def test_every_step_calls_conditional_then_unconditional(run):
    _, calls, _ = run
    visited = ddim_timesteps(STEPS)
    assert len(calls) == 2 * len(visited)
    for step, (t, _) in enumerate(visited):
        (x_c, t_c, cond), (x_u, t_u, uncond) = calls[2 * step], calls[2 * step + 1]
        assert t_c.tolist() == [t] and t_u.tolist() == [t]
        assert torch.equal(x_c, x_u)
        assert set(cond) == {"image", "dwpose", "randomref", "local_image"}
        assert uncond == {}  # the original's unconditional branch passes every condition as None


def test_conditions_are_the_originals_inputs(run, inputs):
    ref, calls, _ = run
    _, ref_pose, poses, first_frame = inputs
    frames = len(poses)
    cond = calls[0][2]
    assert torch.equal(cond["image"], ref.image_embedding) and cond["image"].shape == (1, 1, 1024)
    # dwpose: the reference pose (PIL-bilinear resized) in slot 0, then the target poses, all in [0, 1]
    resized = np.asarray(Image.fromarray(ref_pose).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    assert cond["dwpose"].shape == (1, 3, frames + 1, SIZE, SIZE)
    torch.testing.assert_close(cond["dwpose"][0, :, 0], unit(resized), rtol=0, atol=1e-6)
    for f in range(frames):
        torch.testing.assert_close(cond["dwpose"][0, :, f + 1], unit(poses[f]), rtol=0, atol=1e-6)
    # randomref: the reference latent on every frame
    h = SIZE // Architecture.tiny().latent_scale
    assert cond["randomref"].shape == (1, 4, frames, h, h)
    for f in range(frames):
        assert torch.equal(cond["randomref"][:, :, f], ref.latent[:, :, 0])
    # local_image: the first frame as [0, 1] pixels (not [-1, 1]) repeated over every frame
    assert cond["local_image"].shape == (1, 3, frames, SIZE, SIZE)
    for f in range(frames):
        torch.testing.assert_close(cond["local_image"][0, :, f], unit(first_frame), rtol=0, atol=1e-6)


def test_no_first_frame_means_no_local_image(inputs):
    _, calls, _ = recorded_run(UniAnimatePipeline.tiny(seed=0), inputs, first_frame=None)
    assert set(calls[0][2]) == {"image", "dwpose", "randomref"}


def test_sampling_starts_from_the_long_entrances_noise_prior(run, inputs):
    """q_sample(ref, 939, noise) + 0.1 * offset, with the offset added after (not inside) q_sample."""
    ref, calls, _ = run
    frames = len(inputs[2])
    generator = torch.Generator("cpu").manual_seed(SEED)
    shape = (1, 4, frames, *ref.latent.shape[-2:])
    noise = torch.randn(shape, generator=generator)
    offset = torch.randn(shape[:3] + (1, 1), generator=generator)
    alpha_bar = NoiseSchedule.linear_sd().alphas_cumprod[NOISE_PRIOR_T].float()
    expected = alpha_bar.sqrt() * ref.latent + (1 - alpha_bar).sqrt() * noise + 0.1 * offset
    torch.testing.assert_close(calls[0][0], expected, rtol=1e-5, atol=1e-5)


def test_frames_come_out_in_the_order_of_the_latents(inputs, monkeypatch):
    pipeline = UniAnimatePipeline.tiny(seed=0)
    sampled = []

    def keep(*args, **kwargs):
        sampled.append(real_sample(*args, **kwargs))
        return sampled[-1]

    real_sample = pipeline_module.ddim_sample
    monkeypatch.setattr(pipeline_module, "ddim_sample", keep)
    _, _, frames = recorded_run(pipeline, inputs)
    latents = sampled[0][0].transpose(0, 1)  # [F, 4, h, w]
    one_by_one = decode_latent(pipeline.vae, latents, chunk_size=1)
    expected = one_by_one.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # decoding in chunks of 2 instead of 1 may round a pixel differently, never by more than 1
    gaps = np.abs(frames[:, None].astype(int) - expected[None].astype(int)).max(axis=(2, 3, 4))  # [ours, theirs]
    assert (np.diag(gaps) <= 1).all(), gaps
    assert (gaps[~np.eye(len(frames), dtype=bool)] > 10).all(), gaps  # any other order would show


def test_a_half_precision_unet_leaves_everything_else_in_float32(inputs):
    """As in the original, only the UNet is converted: the sampler's latent, the reference latent,
    CLIP and the VAE stay float32 (in bfloat16 the last DDIM step's noise coefficient rounds to 0)."""
    pipeline = UniAnimatePipeline.tiny(seed=0, dtype=torch.bfloat16)
    assert pipeline.unet.dtype == torch.bfloat16
    assert pipeline.vae.dtype == torch.float32 and pipeline.image_encoder.dtype == torch.float32
    ref, calls, frames = recorded_run(pipeline, inputs)
    assert ref.latent.dtype == torch.float32
    assert all(x.dtype == torch.float32 for x, _, _ in calls)
    assert calls[0][2]["dwpose"].dtype == torch.bfloat16  # conditions are in the UNet's dtype
    assert frames.shape == (len(inputs[2]), SIZE, SIZE, 3)


def test_cpu_offload_renders_the_same_frames(inputs):
    """On a CPU offload has nowhere to move the VAE and CLIP to: same weights, same frames."""
    _, _, plain = recorded_run(UniAnimatePipeline.tiny(seed=0), inputs)
    _, _, offloaded = recorded_run(UniAnimatePipeline.tiny(seed=0, cpu_offload=True), inputs)
    assert np.array_equal(plain, offloaded)


def test_batched_guidance_renders_what_two_calls_render(inputs):
    pipeline = UniAnimatePipeline.tiny(seed=0)
    _, separate_calls, separate = recorded_run(pipeline, inputs, first_frame=inputs[3])
    pipeline.batch_guidance = True
    _, batched_calls, batched = recorded_run(pipeline, inputs, first_frame=inputs[3])
    assert len(batched_calls) == len(separate_calls) // 2 and batched_calls[0][0].shape[0] == 2
    assert np.abs(batched.astype(int) - separate.astype(int)).max() <= 1
