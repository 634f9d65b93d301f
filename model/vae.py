"""The Stable Diffusion 2.1 VAE that UniAnimate uses, as a diffusers `AutoencoderKL`.

The original (`tools/modules/autoencoder.py`) is the latent-diffusion (ldm) autoencoder, loaded from the
`first_stage_model.*` entries of `v2-1_512-ema-pruned.ckpt`. diffusers' `AutoencoderKL` computes the same
function with a different module layout, so this file translates the ldm configuration and state-dict keys.

Pixels are in [-1, 1]. Latents handed to and returned by the pipeline are scaled by SCALE_FACTOR:
encoding samples the posterior (as the original does, not its mean) and multiplies by it; decoding divides.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from model.checkpoints import CheckpointError, StateDict, cached_safetensors, load_strict, read_state_dict
from model.noise import POSTERIOR_SAMPLE, NoiseSource

SCALE_FACTOR = 0.18215
CHECKPOINT_PREFIX = "first_stage_model."

# `auto_encoder.ddconfig` of configs/UniAnimate_infer.yaml (SD 2.1). `video_kernel_size` is accepted and
# ignored by the original, and so here.
SD21_DDCONFIG: dict = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
    "video_kernel_size": [3, 1, 1],
}
SD21_EMBED_DIM = 4

# Same architecture at a width for tests and the untrained demo; keeps the 1/8 latent size of the real one.
TINY_DDCONFIG: dict = {**SD21_DDCONFIG, "ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1}


def vae_config_from_ddconfig(ddconfig: Mapping, embed_dim: int) -> dict:
    """diffusers `AutoencoderKL` constructor arguments equivalent to an ldm (ddconfig, embed_dim) pair."""
    if not ddconfig.get("double_z", False):
        raise ValueError("ddconfig.double_z must be true: the KL autoencoder predicts mean and log-variance")
    if ddconfig.get("attn_resolutions"):
        raise ValueError("ddconfig.attn_resolutions must be empty: diffusers' encoder/decoder blocks have no attention")
    if embed_dim != ddconfig["z_channels"]:
        raise ValueError(f"embed_dim ({embed_dim}) must equal z_channels ({ddconfig['z_channels']}) for diffusers")
    levels = len(ddconfig["ch_mult"])
    return {
        "in_channels": ddconfig["in_channels"],
        "out_channels": ddconfig["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [ddconfig["ch"] * m for m in ddconfig["ch_mult"]],
        "layers_per_block": ddconfig["num_res_blocks"],
        "act_fn": "silu",  # ldm's `nonlinearity` is x * sigmoid(x)
        "latent_channels": ddconfig["z_channels"],
        "norm_num_groups": 32,  # ldm's Normalize: GroupNorm(32, eps=1e-6), diffusers' VAE default eps
        "sample_size": ddconfig["resolution"],
        "scaling_factor": SCALE_FACTOR,
    }


# --------------------------------------------------------------------------- ldm -> diffusers keys

_PARAM = r"(weight|bias)"
_RESNET = r"(norm1|conv1|norm2|conv2|nin_shortcut)"
_ATTENTION_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _resnet_part(name: str) -> str:
    return "conv_shortcut" if name == "nin_shortcut" else name


def _key_rules(levels: int) -> list[tuple[re.Pattern, object]]:
    """(full-key pattern, rename) pairs; a key that matches none of them is not an ldm VAE key.

    The ldm decoder numbers its `up` levels from the highest resolution (`up.0` runs last); diffusers numbers
    `up_blocks` in execution order, so decoder level i becomes up_blocks[levels - 1 - i].
    """
    rules = {
        rf"(encoder|decoder)\.(conv_in|conv_out)\.{_PARAM}": lambda m: f"{m[1]}.{m[2]}.{m[3]}",
        rf"(encoder|decoder)\.norm_out\.{_PARAM}": lambda m: f"{m[1]}.conv_norm_out.{m[2]}",
        rf"(quant_conv|post_quant_conv)\.{_PARAM}": lambda m: f"{m[1]}.{m[2]}",
        rf"(encoder|decoder)\.mid\.block_([12])\.{_RESNET}\.{_PARAM}":
            lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_resnet_part(m[3])}.{m[4]}",
        rf"(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.{_PARAM}":
            lambda m: f"{m[1]}.mid_block.attentions.0.{_ATTENTION_PARTS[m[2]]}.{m[3]}",
        rf"encoder\.down\.(\d+)\.block\.(\d+)\.{_RESNET}\.{_PARAM}":
            lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet_part(m[3])}.{m[4]}",
        rf"encoder\.down\.(\d+)\.downsample\.conv\.{_PARAM}":
            lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}",
        rf"decoder\.up\.(\d+)\.block\.(\d+)\.{_RESNET}\.{_PARAM}":
            lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets.{m[2]}.{_resnet_part(m[3])}.{m[4]}",
        rf"decoder\.up\.(\d+)\.upsample\.conv\.{_PARAM}":
            lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}",
    }
    return [(re.compile(pattern), rename) for pattern, rename in rules.items()]


def _is_attention_projection(ldm_key: str) -> bool:
    return re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm_key) is not None


def convert_ldm_vae_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Renames an ldm VAE state dict (keys without `first_stage_model.`) to diffusers' AutoencoderKL keys.

    The mid-block attention's q/k/v/proj_out are 1x1 convolutions in ldm and linear layers in diffusers:
    the same weights with the two trailing unit axes dropped. Raises ValueError listing keys it cannot place.
    """
    ups = [int(m[1]) for k in state_dict if (m := re.match(r"decoder\.up\.(\d+)\.", k))]
    rules = _key_rules(levels=max(ups) + 1 if ups else 0)
    converted: StateDict = {}
    unmapped = []
    for key, tensor in state_dict.items():
        new_key = next((rename(m) for pattern, rename in rules if (m := pattern.fullmatch(key))), None)
        if new_key is None:
            unmapped.append(key)
            continue
        converted[new_key] = tensor[:, :, 0, 0] if _is_attention_projection(key) else tensor
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f", ... ({len(unmapped) - 8} more)" if len(unmapped) > 8 else "")
        raise ValueError(f"{len(unmapped)} keys are not ldm AutoencoderKL keys: {shown}")
    return converted


def vae_weights_from_checkpoint(checkpoint: Mapping[str, torch.Tensor]) -> StateDict:
    """The diffusers VAE weights inside a full SD checkpoint state dict (what the original loader keeps)."""
    vae_part = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in checkpoint.items() if k.startswith(CHECKPOINT_PREFIX)}
    if not vae_part:
        raise ValueError(f"no '{CHECKPOINT_PREFIX}*' keys: this is not a Stable Diffusion checkpoint with a VAE")
    return convert_ldm_vae_state_dict(vae_part)


# --------------------------------------------------------------------------- building


def build_vae(
    state_dict: Mapping[str, torch.Tensor] | None = None,
    ddconfig: Mapping = SD21_DDCONFIG,
    embed_dim: int = SD21_EMBED_DIM,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> AutoencoderKL:
    """An eval-mode VAE with diffusers-layout weights (see `convert_ldm_vae_state_dict`).

    With weights it is built on the meta device and adopts them directly on `device`/`dtype`, so the model
    is never allocated twice. Without weights it is randomly initialised from `seed`: an untrained model
    for tests and the demo.
    """
    config = vae_config_from_ddconfig(ddconfig, embed_dim)
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = AutoencoderKL(**config)
        vae = vae.to(device=device, dtype=dtype)
    else:
        with torch.device("meta"):
            vae = AutoencoderKL(**config)
        weights = {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}
        load_strict(vae, weights, "VAE weights")
    return vae.eval().requires_grad_(False)


def load_vae(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    ddconfig: Mapping = SD21_DDCONFIG,
    embed_dim: int = SD21_EMBED_DIM,
) -> AutoencoderKL:
    """The SD 2.1 VAE from `v2-1_512-ema-pruned.ckpt`. With `cache_dir`, its converted weights are cached
    there in `dtype` (335 MB in float32, the pipeline's choice), so later loads skip the 5 GB checkpoint."""
    def convert(src: Path) -> StateDict:
        try:
            return vae_weights_from_checkpoint(read_state_dict(src))
        except ValueError as exc:
            raise CheckpointError(f"{src} does not hold the SD 2.1 VAE: {exc}") from exc

    weights = cached_safetensors(path, cache_dir, convert, tag="sd21-vae", dtype=dtype, device=device)
    return build_vae(weights, ddconfig, embed_dim, device=device, dtype=dtype)


# --------------------------------------------------------------------------- encoding and decoding


@torch.no_grad()
def encode_posterior(vae: AutoencoderKL, images: torch.Tensor) -> DiagonalGaussianDistribution:
    """The diagonal Gaussian posterior (`mean`, `logvar` clamped to [-30, 20], `std`), as in the original."""
    return vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist


@torch.no_grad()
def encode_to_latent(
    vae: AutoencoderKL,
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    sample: bool = True,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> scaled latents [B, 4, H/8, W/8] (times SCALE_FACTOR).

    The original draws a posterior sample with `torch.randn` on the CPU in float32 and moves it to the
    model's device; the noise here is drawn the same way, on the generator's device (CPU by default), so a
    seeded CPU generator gives the same latent on any device. `noise` (a `model.noise.NoiseSource`)
    supplies the sample instead of `generator`. `sample=False` returns the posterior mean.
    """
    posterior = encode_posterior(vae, images)
    mean, std = posterior.mean, posterior.std
    if not sample:
        return mean * SCALE_FACTOR
    if noise is not None:
        eps = noise.randn(mean.shape, POSTERIOR_SAMPLE)
    else:
        noise_device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn(mean.shape, generator=generator, device=noise_device, dtype=torch.float32)
    return (mean + std * eps.to(device=mean.device, dtype=mean.dtype)) * SCALE_FACTOR


@torch.no_grad()
def decode_latent_chunks(
    vae: AutoencoderKL, latents: torch.Tensor, chunk_size: int = 2, tiled: bool = False
) -> Iterator[torch.Tensor]:
    """Yields decoded frames [n, 3, H, W] in [-1, 1] for successive groups of at most `chunk_size` latents.

    Decoding one group at a time bounds memory by the chunk, not by the video (the original decodes two
    frames at a time, `decoder_bs: 2`); every frame is decoded independently, so chunking does not change
    the result. `tiled=True` uses diffusers' overlapping-tile decoder for large frames: less memory again,
    but the blended tile seams make it differ slightly from the original.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for chunk in latents.split(chunk_size):
        # multiplied by the reciprocal, as the original does: dividing differs in the last bit for ~1/4 of values
        z = (1.0 / SCALE_FACTOR) * chunk.to(device=vae.device, dtype=vae.dtype)
        yield (vae.tiled_decode(z) if tiled else vae.decode(z)).sample


def decode_latent(vae: AutoencoderKL, latents: torch.Tensor, chunk_size: int = 2, tiled: bool = False) -> torch.Tensor:
    """Scaled latents [N, 4, h, w] -> images [N, 3, 8h, 8w] in [-1, 1] (not clamped), decoded in chunks."""
    return torch.cat(list(decode_latent_chunks(vae, latents, chunk_size, tiled)))
