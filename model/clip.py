"""OpenCLIP ViT-H/14, as UniAnimate uses it, through transformers' CLIP classes.

The original (`tools/modules/clip_embedder.py`, `FrozenOpenCLIPTextVisualEmbedder`) runs open_clip with the
weights of `open_clip_pytorch_model.bin` for two things only:

- the image embedding of the reference frame: the class token after `ln_post`, times the visual projection,
  not normalised, `[B, 1024]` -> `encode_image`;
- `zero_y`, the text features of the empty prompt: the causal text transformer stopped after 23 of its
  24 blocks ("penultimate"), then `ln_final` on all 77 positions, no projection, `[1, 77, 1024]`
  -> `empty_text_context`. It depends only on the weights, so it is computed once and cached.

open_clip and transformers' CLIP compute the same functions (pre-norm blocks, exact GELU, LayerNorm eps
1e-5, scaled dot-product attention); only the state-dict layout differs, which `convert_open_clip_state_dict`
translates into the layout of transformers' `CLIPModel`. A directory in that layout (`save_pretrained`,
as published for ViT-H/14 on the Hugging Face Hub) is accepted as well.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from model.checkpoints import CheckpointError, StateDict, cached_safetensors, load_strict, read_state_dict

# cfg.vit_mean / cfg.vit_std of the original (the OpenAI CLIP constants) and cfg.vit_resolution
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

# open_clip.tokenize("") without needing the tokenizer: start-of-text, end-of-text, then zero padding
# to the context length of 77.
START_TOKEN, END_TOKEN = 49406, 49407


@dataclass(frozen=True)
class ClipSpec:
    """The shape of an OpenCLIP model (open_clip's `vision_cfg`/`text_cfg`)."""

    image_size: int = 224
    patch_size: int = 14
    vision_width: int = 1280
    vision_layers: int = 32
    vision_heads: int = 16
    vision_mlp: int = 5120
    embed_dim: int = 1024  # joint embedding width: the output of the visual projection
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 1024
    text_layers: int = 24
    text_heads: int = 16
    text_mlp: int = 4096


VIT_H_14 = ClipSpec()
# Untrained stand-in for tests and the demo; keeps the 1024-wide outputs the UNet expects.
TINY_CLIP = ClipSpec(vision_width=64, vision_layers=2, vision_heads=2, vision_mlp=128,
                     text_width=1024, text_layers=2, text_heads=16, text_mlp=256)


def vision_config(spec: ClipSpec = VIT_H_14) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=spec.vision_width, intermediate_size=spec.vision_mlp, projection_dim=spec.embed_dim,
        num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads, image_size=spec.image_size,
        patch_size=spec.patch_size, hidden_act="gelu", layer_norm_eps=1e-5,  # open_clip: nn.GELU, nn.LayerNorm
    )


def text_config(spec: ClipSpec = VIT_H_14, num_layers: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.text_width, intermediate_size=spec.text_mlp,
        projection_dim=spec.embed_dim, num_hidden_layers=spec.text_layers if num_layers is None else num_layers,
        num_attention_heads=spec.text_heads, max_position_embeddings=spec.context_length,
        hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=START_TOKEN, eos_token_id=END_TOKEN, pad_token_id=0,
    )


# --------------------------------------------------------------------------- open_clip -> transformers keys

_BLOCK_PARTS = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
_TOWERS = {"visual.transformer": "vision_model.encoder", "transformer": "text_model.encoder"}
_BLOCK = re.compile(r"(visual\.transformer|transformer)\.resblocks\.(\d+)\.(.+)\.(weight|bias)")
_PACKED = re.compile(r"(visual\.transformer|transformer)\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)")
_SINGLE = {  # open_clip key -> (transformers key, transpose)
    "visual.conv1.weight": ("vision_model.embeddings.patch_embedding.weight", False),
    "visual.positional_embedding": ("vision_model.embeddings.position_embedding.weight", False),
    "visual.class_embedding": ("vision_model.embeddings.class_embedding", False),
    "visual.ln_pre.weight": ("vision_model.pre_layrnorm.weight", False),
    "visual.ln_pre.bias": ("vision_model.pre_layrnorm.bias", False),
    "visual.ln_post.weight": ("vision_model.post_layernorm.weight", False),
    "visual.ln_post.bias": ("vision_model.post_layernorm.bias", False),
    "visual.proj": ("visual_projection.weight", True),  # open_clip: x @ proj; Linear: x @ weight.T
    "token_embedding.weight": ("text_model.embeddings.token_embedding.weight", False),
    "positional_embedding": ("text_model.embeddings.position_embedding.weight", False),
    "ln_final.weight": ("text_model.final_layer_norm.weight", False),
    "ln_final.bias": ("text_model.final_layer_norm.bias", False),
    "text_projection": ("text_projection.weight", True),
    "logit_scale": ("logit_scale", False),
}


def convert_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Renames an open_clip CLIP state dict to transformers' `CLIPModel` keys.

    open_clip packs each attention's q, k and v projections into one `in_proj` matrix (rows in that
    order); transformers keeps three linear layers. Raises ValueError listing keys it cannot place.
    """
    converted: StateDict = {}
    unmapped = []
    for key, tensor in state_dict.items():
        if key in _SINGLE:
            new_key, transpose = _SINGLE[key]
            converted[new_key] = tensor.t() if transpose else tensor
        elif m := _PACKED.fullmatch(key):
            prefix = f"{_TOWERS[m[1]]}.layers.{m[2]}.self_attn"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                converted[f"{prefix}.{name}.{m[3]}"] = part
        elif (m := _BLOCK.fullmatch(key)) and m[3] in _BLOCK_PARTS:
            converted[f"{_TOWERS[m[1]]}.layers.{m[2]}.{_BLOCK_PARTS[m[3]]}.{m[4]}"] = tensor
        else:
            unmapped.append(key)
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f", ... ({len(unmapped) - 8} more)" if len(unmapped) > 8 else "")
        raise ValueError(f"{len(unmapped)} keys are not open_clip CLIP keys: {shown}")
    return converted


# --------------------------------------------------------------------------- reading weights


def read_clip_state_dict(path: str | os.PathLike, spec: ClipSpec = VIT_H_14) -> StateDict:
    """transformers `CLIPModel`-layout weights from `open_clip_pytorch_model.bin` or a `save_pretrained` dir."""
    path = Path(path)
    if not path.is_dir():
        try:
            return convert_open_clip_state_dict(read_state_dict(path))
        except ValueError as exc:
            raise CheckpointError(f"{path} is not an OpenCLIP checkpoint: {exc}") from exc
    _check_transformers_config(path, spec)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return _without_position_ids({k: v for shard in shards for k, v in read_state_dict(path / shard).items()})
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return _without_position_ids(read_state_dict(path / name))
    raise CheckpointError(f"{path} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _without_position_ids(state_dict: StateDict) -> StateDict:
    """transformers before 4.31 saved `embeddings.position_ids` (a constant arange) as a buffer; the
    current classes no longer have it, so such directories (the Hub's ViT-H/14 among them) would not
    load strictly."""
    return {k: v for k, v in state_dict.items() if not k.endswith("embeddings.position_ids")}


def _check_transformers_config(path: Path, spec: ClipSpec) -> None:
    """Refuses a directory whose architecture differs in ways the weight shapes cannot reveal."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} is a directory without config.json: not a transformers CLIP model")
    config = json.loads(config_file.read_text())
    expected = {"vision_config": vision_config(spec), "text_config": text_config(spec)}
    wrong = []
    for section, want in expected.items():
        have = config.get(section, {})
        for field in ("num_attention_heads", "hidden_act", "layer_norm_eps"):
            if field in have and have[field] != getattr(want, field):
                wrong.append(f"{section}.{field} = {have[field]!r} (expected {getattr(want, field)!r})")
    if wrong:
        raise CheckpointError(f"{path}/config.json does not describe OpenCLIP ViT-H/14: {'; '.join(wrong)}")


def vision_weights(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The image encoder's part of CLIPModel-layout weights."""
    return {k: v for k, v in state_dict.items() if k.startswith(("vision_model.", "visual_projection."))}


def text_weights(state_dict: Mapping[str, torch.Tensor], spec: ClipSpec = VIT_H_14) -> StateDict:
    """The text transformer's part of CLIPModel-layout weights, without the `text_model.` prefix and without
    the last block (see build_text_encoder)."""
    last = f"encoder.layers.{spec.text_layers - 1}."
    text = {k.removeprefix("text_model."): v for k, v in state_dict.items() if k.startswith("text_model.")}
    return {k: v for k, v in text.items() if not k.startswith(last)}


# --------------------------------------------------------------------------- image encoder


def build_image_encoder(
    state_dict: Mapping[str, torch.Tensor] | None = None,
    spec: ClipSpec = VIT_H_14,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> CLIPVisionModelWithProjection:
    """The vision tower plus projection, eval mode. `state_dict`: CLIPModel-layout weights, of which the
    `vision_model.*` and `visual_projection.weight` keys are used; None gives random weights from `seed`."""
    config = vision_config(spec)
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPVisionModelWithProjection(config)
        model = model.to(device=device, dtype=dtype)
    else:
        with torch.device("meta"):
            model = CLIPVisionModelWithProjection(config)
        _materialise_position_ids(model, device)
        load_strict(model, _on(vision_weights(state_dict), device, dtype), "CLIP image encoder weights")
    return model.eval().requires_grad_(False)


def load_image_encoder(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    spec: ClipSpec = VIT_H_14,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CLIPVisionModelWithProjection:
    """The image encoder from `open_clip_pytorch_model.bin` (or a transformers dir); with `cache_dir`,
    the converted vision weights are cached there in `dtype` and later loads skip the 4 GB pickle."""
    def convert(src: Path) -> StateDict:
        return vision_weights(read_clip_state_dict(src, spec))

    weights = cached_safetensors(path, cache_dir, convert, tag="clip-vision", dtype=dtype, device=device)
    return build_image_encoder(weights, spec, device, dtype)


def preprocess_reference(image: Image.Image, size: int = 224) -> torch.Tensor:
    """A PIL image -> `[1, 3, size, size]` normalised pixels, as the original's `vit_transforms`.

    The whole frame is resized with PIL's bilinear filter to a square (no crop, aspect ratio not kept),
    scaled to [0, 1] and normalised with the OpenAI CLIP mean and std.
    """
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    return pixels.sub(mean).div(std).unsqueeze(0)


@torch.no_grad()
def encode_image(model: CLIPVisionModelWithProjection, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels `[B, 3, 224, 224]` -> image embeddings `[B, 1024]` (projected, not L2-normalised).

    The UNet takes them with a token axis, `[B, 1, 1024]`.
    """
    return model(pixel_values=pixels.to(device=model.device, dtype=model.dtype)).image_embeds


# --------------------------------------------------------------------------- text encoder (zero_y only)


def build_text_encoder(
    state_dict: Mapping[str, torch.Tensor] | None = None,
    spec: ClipSpec = VIT_H_14,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> CLIPTextModel:
    """The text transformer up to its penultimate block, followed by the final layer norm.

    The original reads the text features of the second-to-last block (`layer: penultimate`), so the last
    block never runs; it is left out here, and its weights are ignored. `state_dict`: CLIPModel-layout
    weights, of which the `text_model.*` keys are used; None gives random weights from `seed`.
    """
    config = text_config(spec, num_layers=spec.text_layers - 1)
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPTextModel(config)
        model = model.to(device=device, dtype=dtype)
    else:
        with torch.device("meta"):
            model = CLIPTextModel(config)
        _materialise_position_ids(model, device)
        # transformers < 5 wraps the text transformer in a `text_model` attribute; 5 made it the model itself
        prefix = "text_model." if hasattr(model, "text_model") else ""
        weights = {prefix + k: v for k, v in text_weights(state_dict, spec).items()}
        load_strict(model, _on(weights, device, dtype), "CLIP text encoder weights")
    return model.eval().requires_grad_(False)


def empty_prompt_tokens(context_length: int = 77) -> torch.Tensor:
    """open_clip's tokenisation of "": `[[49406, 49407, 0, ..., 0]]`, shape `[1, context_length]`."""
    tokens = torch.zeros(1, context_length, dtype=torch.long)
    tokens[0, :2] = torch.tensor([START_TOKEN, END_TOKEN])
    return tokens


@torch.no_grad()
def empty_text_context(model: CLIPTextModel) -> torch.Tensor:
    """zero_y: the empty prompt's features `[1, 77, width]` (causal mask only, padding is not masked)."""
    tokens = empty_prompt_tokens(model.config.max_position_embeddings).to(model.device)
    return model(input_ids=tokens).last_hidden_state


def load_zero_y(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    spec: ClipSpec = VIT_H_14,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """zero_y `[1, 77, 1024]` (float32) for the CLIP weights at `path`.

    It is a constant of the weights, so with `cache_dir` it is computed once (on the CPU, in float32 as
    the original) and stored there; later loads read 300 KB instead of building the text transformer.
    """
    def compute(src: Path) -> StateDict:
        weights = read_clip_state_dict(src, spec)
        return {"zero_y": empty_text_context(build_text_encoder(weights, spec))}

    return cached_safetensors(Path(path), cache_dir, compute, tag="zero-y", dtype=torch.float32,
                              device=device)["zero_y"]


# --------------------------------------------------------------------------- helpers


def _on(state_dict: Mapping[str, torch.Tensor], device: str | torch.device, dtype: torch.dtype) -> StateDict:
    return {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}


def _materialise_position_ids(model: torch.nn.Module, device: str | torch.device) -> None:
    """`position_ids` is a non-persistent buffer (an arange, in no checkpoint); a meta build leaves it empty."""
    for module in model.modules():
        if isinstance(getattr(module, "position_ids", None), torch.Tensor):
            count = module.position_ids.shape[-1]
            module.position_ids = torch.arange(count, device=device).expand(1, -1)
