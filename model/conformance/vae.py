"""VAE conformance: the golden tiny-VAE outputs and the layout of the released SD 2.1 checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from model.checkpoints import check_state_dict
from model.conformance import CheckResult
from model.vae import (
    SCALE_FACTOR,
    build_vae,
    convert_ldm_vae_state_dict,
    decode_latent,
    encode_posterior,
    vae_config_from_ddconfig,
)


def check_vae_fixture(path: Path, data: dict) -> CheckResult:
    """Converts the fixture's ldm weights, then compares the posterior fields and a decode to the original."""
    config = data["config"]["kwargs"]
    vae = build_vae(convert_ldm_vae_state_dict(data["state_dict"]), config["ddconfig"], config["embed_dim"])
    image, latent = data["inputs"]["image"], data["inputs"]["latent"]
    posterior = encode_posterior(vae, image)
    actual = {
        "posterior_mean": posterior.mean,
        "posterior_logvar": posterior.logvar,
        "posterior_std": posterior.std,
        # decode_latent takes scaled latents, the fixture's decode an unscaled one
        "decoded": decode_latent(vae, latent * SCALE_FACTOR, chunk_size=1),
    }
    tol = data["tolerance"]
    errors, failed = {}, []
    for name, expected in data["outputs"].items():
        errors[name] = (actual[name] - expected).abs().max().item()
        if not torch.allclose(actual[name], expected, atol=tol["atol"], rtol=tol["rtol"]):
            failed.append(name)
    detail = ", ".join(f"{k}={v:.2g}" for k, v in errors.items())
    if failed:
        detail = f"outside tolerance: {', '.join(failed)}; {detail}"
    return CheckResult(str(path), "vae", max(errors.values()), not failed, detail)


def check_vae_layout(path: Path, data: dict) -> CheckResult:
    """Every key of the released checkpoint's VAE lands on a diffusers parameter of the right shape."""
    kwargs = data["constructor_kwargs"]
    with torch.device("meta"):
        vae = AutoencoderKL(**vae_config_from_ddconfig(kwargs["ddconfig"], kwargs["embed_dim"]))
    prefix = data["checkpoint_prefix"]
    checkpoint = {
        key.removeprefix(prefix): torch.empty(entry["shape"], device="meta") for key, entry in data["keys"].items()
    }
    problems = []
    if len(checkpoint) != data["num_keys"]:
        problems.append(f"{len(checkpoint)} keys, expected {data['num_keys']}")
    try:
        check_state_dict({k: v.shape for k, v in vae.state_dict().items()}, convert_ldm_vae_state_dict(checkpoint),
                         "SD 2.1 VAE layout")
    except (ValueError, RuntimeError) as exc:
        problems.append(str(exc))
    total = sum(p.numel() for p in vae.parameters())
    if total != data["total_parameters"]:
        problems.append(f"{total:,} parameters, expected {data['total_parameters']:,}")
    detail = "; ".join(problems) or f"{len(checkpoint)} keys -> {len(vae.state_dict())} diffusers keys, {total:,} params"
    return CheckResult(str(path), "vae_layout", float(len(problems)), not problems, detail)
