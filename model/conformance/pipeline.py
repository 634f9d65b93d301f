"""Replays kind `pipeline` (e.g. `fixtures/pipeline_tiny.pt`): one run of the original short entrance.

The run goes through the project's own path: the stored files are written to disk and read with
`model.motion.load_image` (reference) and `model.pose.folder.read_pose_folder` (pose frames), resized
with `model.pose.render.pose_frames_for_model`, then `UniAnimatePipeline.prepare_reference` and
`render_segment` with the file's condition set (`model.conditions`). The recorded random draws come
in through a `model.noise.RecordedNoise`, the recorded CLIP embedding through the pipeline's image
encoder slot; forward hooks only observe. Nothing about the case is assumed: sizes, frame count,
steps, guidance, noise-prior step and network widths are all read from the file.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import Tensor

from model.architecture import Architecture
from model.clip import TINY_CLIP
from model.conditions import ConditionSet, condition_set
from model.config import UNetConfig
from model.conformance import CheckResult
from model.motion import load_image
from model.noise import Draw, RecordedNoise
from model.pipeline import OFFSET_NOISE_STRENGTH, UniAnimatePipeline
from model.pose.folder import read_pose_folder
from model.pose.render import pose_frames_for_model, resize_like_original
from model.pose.video import SkeletonVideo
from model.sampler import ddim_step, guide
from model.schedule import ddim_timesteps
from model.unet import UniAnimateUNet
from model.vae import build_vae, convert_ldm_vae_state_dict

# Compared exactly: the image transforms (same decoders, PIL bilinear, / 255 give the same floats).
EXACT = ("vit_input", "vae_encoder_input", "local_image", "dwpose")


class FixedImageEncoder(torch.nn.Module):
    """An image encoder that returns a given embedding and keeps the pixels it was shown.

    It fills the pipeline's `image_encoder` slot, where production puts the CLIP vision tower.
    """

    def __init__(self, embedding: Tensor) -> None:
        super().__init__()
        self.register_buffer("embedding", embedding.float())
        self.seen: list[Tensor] = []

    @property
    def device(self) -> torch.device:
        return self.embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    def forward(self, pixel_values: Tensor) -> SimpleNamespace:
        self.seen.append(pixel_values.detach().clone())
        return SimpleNamespace(image_embeds=self.embedding.expand(pixel_values.shape[0], -1))


def check_pipeline_fixture(path: Path, data: dict, conditions: list[str] | None = None) -> list[CheckResult]:
    """One result per pass of the file (or only the passes whose condition set is in `conditions`)."""
    cfg = data["config"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, raw in data["files"].items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(raw.numpy().tobytes())
        entry = cfg["test_list_entry"]
        image = load_image(root / entry["ref_image"])
        folder = read_pose_folder(root / entry["pose_dir"], cfg["frames"], entry["frame_interval"])
    decoded = _decoded_errors(data, entry, image, folder)
    pipeline = _pipeline(data)
    results = []
    for spec in data["passes"]:
        name = pass_conditions(spec).name
        if conditions is not None and name not in conditions:
            continue
        label = f"{path} [{name}]"
        try:
            actual = replay_pass(pipeline, data, spec, image, folder)
            results.append(_verdict(label, data, spec, actual, decoded))
        except Exception as exc:  # noqa: BLE001 -- a crash in one pass is that pass's failure
            results.append(CheckResult(label, "pipeline", float("inf"), False, f"{type(exc).__name__}: {exc}"))
    if not results:
        return [CheckResult(str(path), "pipeline", float("inf"), False, f"no pass with conditions {conditions}")]
    return results


def replay_pass(pipeline: UniAnimatePipeline, data: dict, spec: dict, image: np.ndarray, folder) -> dict[str, Tensor]:
    """Runs one pass through the pipeline and returns every tensor the fixture stores, as produced."""
    cfg = data["config"]
    eff = cfg["effective_cfg"]
    width, height = cfg["resolution_WH"]
    if float(spec["eta"]) != 0.0:
        raise ValueError(f"eta {spec['eta']}: only the deterministic DDIM of the entrances (eta 0) is implemented")
    if float(eff["Diffusion"]["noise_strength"]) != OFFSET_NOISE_STRENGTH:
        raise ValueError(f"noise_strength {eff['Diffusion']['noise_strength']} != {OFFSET_NOISE_STRENGTH}")
    conditions = pass_conditions(spec)
    if list(eff.get("vit_resolution", [224, 224])) != [224, 224]:
        raise ValueError(f"vit_resolution {eff['vit_resolution']}: the CLIP input is 224 x 224")
    poses = pose_frames_for_model(SkeletonVideo(folder.frames, 1.0, 1.0, 1), height, width)
    missing = cfg["frames"] - len(poses)
    if missing > 0:  # the original zero-pads the driving poses up to max_frames
        poses = np.concatenate([poses, np.zeros((missing, *poses.shape[1:]), np.uint8)])
    ref_pose = resize_like_original(_pil(folder.ref_pose), height, width)
    noise = RecordedNoise(Draw(d["role"], d["tensor"]) for d in data["random_draws"])
    encoder: FixedImageEncoder = pipeline.image_encoder
    encoder.seen.clear()
    with _recording(pipeline) as rec:
        ref = pipeline.prepare_reference(image, ref_pose, height, width, conditions=conditions, noise=noise)
        first = spec.get("first_frame")  # only files of the `chained` set carry one
        first = None if first is None else first.numpy()
        frames = pipeline.render_segment(ref, poses, first, seed=0, steps=int(spec["ddim_timesteps"]),
                                         guidance_scale=float(spec["guide_scale"]),
                                         noise_prior_t=int(eff["noise_prior_value"]), noise=noise)
    if noise.unused():
        raise ValueError(f"{len(noise.unused())} recorded draws before sampling were never asked for")
    actual = _reference_tensors(ref, rec, encoder)
    actual.update(_step_tensors(pipeline, rec, spec, float(spec["guide_scale"])))
    actual["noise_before_prior"] = _noise_before_prior(data)
    actual["frames_uint8"] = torch.from_numpy(frames)
    return actual


def pass_conditions(spec: dict) -> ConditionSet:
    """A pass's condition set: named by `conditions` (files this project writes), else by its keys."""
    return condition_set(spec.get("conditions") or ",".join(spec["partial_keys"]))


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


def _pipeline(data: dict) -> UniAnimatePipeline:
    """The UNet and VAE from the stored constructor arguments and weights, float32 on the CPU."""
    cfg = data["config"]
    config = UNetConfig.from_original_kwargs({**cfg["unet"]["kwargs"], "config": cfg["unet"]["config_object"]})
    unet = UniAnimateUNet(config).eval().requires_grad_(False)
    unet.load_state_dict(data["state_dicts"]["unet"], strict=True)
    unet.set_zero_y(data["inputs"]["zero_y"])
    ddconfig, embed_dim = cfg["vae"]["kwargs"]["ddconfig"], cfg["vae"]["kwargs"]["embed_dim"]
    vae = build_vae(convert_ldm_vae_state_dict(data["state_dicts"]["vae"]), ddconfig, embed_dim)
    arch = Architecture(unet=config, vae_ddconfig=dict(ddconfig), clip=TINY_CLIP)
    return UniAnimatePipeline(
        unet, vae, FixedImageEncoder(data["inputs"]["clip_image_embedding"]), architecture=arch,
        label="conformance replay", untrained=False, device=torch.device("cpu"), dtype=torch.float32,
        vae_chunk_size=min(int(cfg["effective_cfg"]["decoder_bs"]), int(cfg["frames"])),
        batch_guidance=False,  # two calls, conditional first, as the original: the order is checked
    )


@contextmanager
def _recording(pipeline: UniAnimatePipeline) -> Iterator[SimpleNamespace]:
    """Observes the UNet calls and the VAE's encoder and decoder while the pipeline runs."""
    rec = SimpleNamespace(calls=[], encoder_input=[], moments=[], decoder_input=[], decoded=[])

    def unet_hook(_module, args, kwargs, output):
        x, t = (list(args) + [kwargs.get("x"), kwargs.get("t")])[:2]
        given = {k: v for k, v in kwargs.items() if isinstance(v, Tensor) and k not in ("x", "t")}
        rec.calls.append(SimpleNamespace(x=x.detach().clone(), t=t, given=given, out=output.detach().clone()))

    vae = pipeline.vae
    handles = [
        pipeline.unet.register_forward_hook(unet_hook, with_kwargs=True),
        vae.encoder.register_forward_pre_hook(lambda _m, args: rec.encoder_input.append(args[0].clone())),
        vae.quant_conv.register_forward_hook(lambda _m, _a, out: rec.moments.append(out.clone())),
        vae.post_quant_conv.register_forward_pre_hook(lambda _m, args: rec.decoder_input.append(args[0].clone())),
        vae.decoder.register_forward_hook(lambda _m, _a, out: rec.decoded.append(out.clone())),
    ]
    try:
        yield rec
    finally:
        for handle in handles:
            handle.remove()


def _reference_tensors(ref, rec: SimpleNamespace, encoder: FixedImageEncoder) -> dict[str, Tensor]:
    posterior = DiagonalGaussianDistribution(rec.moments[0])
    cond = rec.calls[0].given
    frames = rec.calls[0].x.shape[2]
    actual = {
        "vit_input": encoder.seen[0],
        "vae_encoder_input": rec.encoder_input[0],
        "ref_posterior_mean": posterior.mean,
        "ref_posterior_logvar": posterior.logvar,
        "ref_posterior_std": posterior.std,
        "ref_latent": ref.latent[:, :, 0],
        "randomref": cond.get("randomref", ref.latent.expand(-1, -1, frames, -1, -1)),
        "x_T": rec.calls[0].x,
        "noise_prior_t": None,
        "image": cond["image"],
        "dwpose": cond["dwpose"],
        "local_image": cond.get("local_image", ref.pixels.expand(-1, -1, frames, -1, -1)),
    }
    actual.pop("noise_prior_t")
    return actual


def _step_tensors(pipeline: UniAnimatePipeline, rec: SimpleNamespace, spec: dict, scale: float) -> dict[str, Tensor]:
    """Per step: the conditional call first with exactly the pass's keys, then the unconditional one
    with none; x0 and the DDIM output follow from them by the project's own `ddim_step`."""
    calls = rec.calls
    keys = sorted(spec["cond_given"])
    for i in range(0, len(calls), 2):
        if sorted(calls[i].given) != keys or calls[i + 1].given:
            raise AssertionError(f"UNet call {i}: conditions {sorted(calls[i].given)} then "
                                 f"{sorted(calls[i + 1].given)}, expected {keys} then none")
    pairs = ddim_timesteps(int(spec["ddim_timesteps"]), pipeline.schedule.num_timesteps)
    timesteps = [int(c.t.flatten()[0]) for c in calls[::2]]
    if timesteps != [t for t, _ in pairs]:
        raise AssertionError(f"the UNet saw timesteps {timesteps}, the sampler's schedule is {pairs}")
    x0s, xts = [], []
    for step, (cond, uncond) in enumerate(zip(calls[::2], calls[1::2])):
        t, t_prev = pairs[step]
        x_prev, x0 = ddim_step(pipeline.schedule, cond.x, guide(cond.out, uncond.out, scale), t, t_prev)
        x0s.append(x0)
        xts.append(calls[2 * step + 2].x if 2 * step + 2 < len(calls) else x_prev)
    decoder_input = torch.cat(rec.decoder_input)
    decoded = torch.cat(rec.decoded)
    return {
        "timesteps": torch.tensor(timesteps),
        "unet_cond_out": torch.stack([c.out for c in calls[::2]]),
        "unet_uncond_out": torch.stack([c.out for c in calls[1::2]]),
        "x0_pred": torch.stack(x0s),
        "xt_out": torch.stack(xts),
        "final_latent": xts[-1],
        "decoder_input": decoder_input,
        "decoded_video": decoded.transpose(0, 1).unsqueeze(0),
    }


def _noise_before_prior(data: dict) -> Tensor:
    """Not a tensor the pipeline keeps (it adds the offset inside `noise_prior`): formed here from the
    same draws and strength, so that its check at least pins the draws' roles and shapes."""
    draws = {d["role"]: d["tensor"] for d in data["random_draws"]}
    return draws["start_noise"] + OFFSET_NOISE_STRENGTH * draws["offset_noise"]


def _decoded_errors(data: dict, entry: dict, image: np.ndarray, folder) -> dict[str, float]:
    """Max abs difference (in levels) of every decoded file against the file's arrays; inf if misshapen."""
    ours = {entry["ref_image"]: image, f"{entry['pose_dir']}/ref_pose.jpg": folder.ref_pose}
    ours.update({f"{entry['pose_dir']}/{name}": frame for name, frame in zip(folder.names, folder.frames)})
    errors = {}
    for name, expected in data["decoded"].items():
        got = ours.get(name)
        if got is None or tuple(got.shape) != tuple(expected.shape):
            errors[name] = float("inf")
        else:
            errors[name] = float(np.abs(got.astype(np.int16) - expected.numpy().astype(np.int16)).max())
    return errors


def _verdict(label: str, data: dict, spec: dict, actual: dict[str, Tensor], decoded: dict[str, float]) -> CheckResult:
    tol = data["tolerance"]
    expected = {**data["intermediates"], **spec["outputs"]}
    expected.pop("noise_prior_t", None)
    errors: dict[str, float] = {"decoded": max(decoded.values())}
    shares: dict[str, float] = {}  # share of uint8 values that differ
    failed = [f"decoded: {n}" for n, e in decoded.items() if e != 0]
    for name, reference in expected.items():
        got = actual.get(name)
        if got is None or tuple(got.shape) != tuple(reference.shape):
            errors[name] = float("inf")
            failed.append(f"{name}: shape {None if got is None else list(got.shape)} != {list(reference.shape)}")
            continue
        if reference.dtype == torch.uint8:
            diff = (got.to(torch.int16) - reference.to(torch.int16)).abs()
            errors[name] = float(diff.max())
            share = shares[name] = float((diff > 0).float().mean())
            if errors[name] > tol["uint8_max_abs_diff"] or share > tol["uint8_max_fraction_differing"]:
                failed.append(f"{name}: max {errors[name]:.0f}, {share:.2%} differ")
            continue
        got, reference = got.double(), reference.double()
        errors[name] = float((got - reference).abs().max())
        ok = errors[name] == 0 if name in EXACT or reference.dtype == torch.int64 else torch.allclose(
            got, reference, atol=tol["atol"], rtol=tol["rtol"])
        if not ok:
            failed.append(f"{name}: max abs err {errors[name]:.3g}")
    if int(data["intermediates"]["noise_prior_t"]) != int(data["config"]["effective_cfg"]["noise_prior_value"]):
        failed.append("noise_prior_t differs from the config's noise_prior_value")
    # the headline is the worst float error; uint8 frames and decoded files are listed in levels
    floats = {n: e for n, e in errors.items() if n not in ("decoded", "frames_uint8", "timesteps")}
    worst = max(floats, key=floats.__getitem__)
    listing = " ".join(f"{n}={e:.3g}" + (f"({shares[n]:.3%})" if n in shares else "") for n, e in errors.items())
    detail = ("; ".join(failed) + " | " if failed else f"{len(errors)} tensors, worst float {worst} | ") + listing
    return CheckResult(label, "pipeline", floats[worst], not failed, detail)
