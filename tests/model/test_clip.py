"""The CLIP encoders against an independent plain-torch forward that follows open_clip's math.

open_clip itself cannot be installed here, so the tests write a small random state dict in open_clip's
layout and run it through `reference_image_embedding` / `reference_zero_y`, which use open_clip's own
building blocks (packed-qkv `nn.MultiheadAttention`, pre-norm residual blocks, exact GELU).
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPVisionModelWithProjection

from model.checkpoints import CheckpointError, check_state_dict
from model.clip import (
    IMAGE_MEAN,
    IMAGE_STD,
    VIT_H_14,
    ClipSpec,
    build_image_encoder,
    build_text_encoder,
    convert_open_clip_state_dict,
    empty_prompt_tokens,
    empty_text_context,
    encode_image,
    load_image_encoder,
    load_zero_y,
    preprocess_reference,
    read_clip_state_dict,
    text_config,
    text_weights,
    vision_config,
    vision_weights,
)

SPEC = ClipSpec(image_size=28, patch_size=14, vision_width=32, vision_layers=2, vision_heads=4, vision_mlp=64,
                embed_dim=24, text_width=32, text_layers=3, text_heads=4, text_mlp=64)


def open_clip_state_dict(spec: ClipSpec, seed: int = 0, meta: bool = False) -> dict[str, torch.Tensor]:
    """Random weights under open_clip's key names and shapes (none of them trivially 0 or 1);
    `meta=True` gives shapes only, for full-size layout checks."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta") if meta else torch.randn(shape, generator=g)

    def weight(*shape: int) -> torch.Tensor:
        return randn(*shape) / shape[-1] ** 0.5

    def norm(width: int) -> torch.Tensor:
        return 1 + 0.1 * randn(width)

    def small(*shape: int) -> torch.Tensor:
        return 0.05 * randn(*shape)

    def blocks(prefix: str, width: int, mlp: int, layers: int) -> dict[str, torch.Tensor]:
        sd = {}
        for i in range(layers):
            p = f"{prefix}.resblocks.{i}"
            sd |= {
                f"{p}.ln_1.weight": norm(width), f"{p}.ln_1.bias": small(width),
                f"{p}.attn.in_proj_weight": weight(3 * width, width), f"{p}.attn.in_proj_bias": small(3 * width),
                f"{p}.attn.out_proj.weight": weight(width, width), f"{p}.attn.out_proj.bias": small(width),
                f"{p}.ln_2.weight": norm(width), f"{p}.ln_2.bias": small(width),
                f"{p}.mlp.c_fc.weight": weight(mlp, width), f"{p}.mlp.c_fc.bias": small(mlp),
                f"{p}.mlp.c_proj.weight": weight(width, mlp), f"{p}.mlp.c_proj.bias": small(width),
            }
        return sd

    vw, tw = spec.vision_width, spec.text_width
    grid = spec.image_size // spec.patch_size
    return {
        "visual.class_embedding": small(vw) * 10,
        "visual.positional_embedding": small(grid * grid + 1, vw) * 10,
        "visual.proj": weight(vw, spec.embed_dim),
        "visual.conv1.weight": weight(vw, 3, spec.patch_size, spec.patch_size) / spec.patch_size,
        "visual.ln_pre.weight": norm(vw), "visual.ln_pre.bias": small(vw),
        **blocks("visual.transformer", vw, spec.vision_mlp, spec.vision_layers),
        "visual.ln_post.weight": norm(vw), "visual.ln_post.bias": small(vw),
        "token_embedding.weight": randn(spec.vocab_size, tw) * 0.1,
        "positional_embedding": small(spec.context_length, tw),
        **blocks("transformer", tw, spec.text_mlp, spec.text_layers),
        "ln_final.weight": norm(tw), "ln_final.bias": small(tw),
        "text_projection": weight(tw, spec.embed_dim),
        "logit_scale": small(),
    }


def _residual_block(sd: dict, prefix: str, x: torch.Tensor, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with exact GELU."""
    width = x.shape[-1]
    attn = nn.MultiheadAttention(width, heads, batch_first=True)
    attn.load_state_dict({k.removeprefix(f"{prefix}.attn."): v for k, v in sd.items() if k.startswith(f"{prefix}.attn.")})
    h = F.layer_norm(x, (width,), sd[f"{prefix}.ln_1.weight"], sd[f"{prefix}.ln_1.bias"], eps=1e-5)
    x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    h = F.layer_norm(x, (width,), sd[f"{prefix}.ln_2.weight"], sd[f"{prefix}.ln_2.bias"], eps=1e-5)
    h = F.gelu(F.linear(h, sd[f"{prefix}.mlp.c_fc.weight"], sd[f"{prefix}.mlp.c_fc.bias"]))
    return x + F.linear(h, sd[f"{prefix}.mlp.c_proj.weight"], sd[f"{prefix}.mlp.c_proj.bias"])


@torch.no_grad()
def reference_image_embedding(sd: dict, spec: ClipSpec, pixels: torch.Tensor) -> torch.Tensor:
    """open_clip VisionTransformer.forward: patches, class token, pos emb, ln_pre, blocks, ln_post[0] @ proj."""
    w = spec.vision_width
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=spec.patch_size).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, w)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = F.layer_norm(x, (w,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"], eps=1e-5)
    for i in range(spec.vision_layers):
        x = _residual_block(sd, f"visual.transformer.resblocks.{i}", x, spec.vision_heads, None)
    x = F.layer_norm(x, (w,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"], eps=1e-5)
    return x[:, 0] @ sd["visual.proj"]


@torch.no_grad()
def reference_zero_y(sd: dict, spec: ClipSpec) -> torch.Tensor:
    """FrozenOpenCLIPTextVisualEmbedder(text="", layer="penultimate"): all blocks but the last, ln_final."""
    tokens = torch.tensor([[49406, 49407] + [0] * (spec.context_length - 2)])
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    n = spec.context_length
    causal = torch.full((n, n), float("-inf")).triu(1)  # open_clip's build_attention_mask
    for i in range(spec.text_layers - 1):
        x = _residual_block(sd, f"transformer.resblocks.{i}", x, spec.text_heads, causal)
    return F.layer_norm(x, (spec.text_width,), sd["ln_final.weight"], sd["ln_final.bias"], eps=1e-5)


@pytest.fixture(scope="module")
def open_clip_sd() -> dict[str, torch.Tensor]:
    return open_clip_state_dict(SPEC)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, SPEC.image_size, SPEC.image_size, generator=torch.Generator().manual_seed(1))


def test_image_embedding_matches_open_clip_math(open_clip_sd, pixels):
    model = build_image_encoder(convert_open_clip_state_dict(open_clip_sd), SPEC)
    actual = encode_image(model, pixels)
    expected = reference_image_embedding(open_clip_sd, SPEC, pixels)
    assert actual.shape == (2, SPEC.embed_dim)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    # the original returns the projected class token as is, without L2 normalisation
    assert not torch.allclose(actual.norm(dim=-1), torch.ones(2), atol=1e-2)


def test_zero_y_matches_open_clip_penultimate_layer(open_clip_sd):
    model = build_text_encoder(convert_open_clip_state_dict(open_clip_sd), SPEC)
    assert model.config.num_hidden_layers == SPEC.text_layers - 1
    actual = empty_text_context(model)
    assert actual.shape == (1, SPEC.context_length, SPEC.text_width)
    torch.testing.assert_close(actual, reference_zero_y(open_clip_sd, SPEC), atol=1e-5, rtol=1e-5)


def test_zero_y_is_not_the_last_layer(open_clip_sd):
    """Guards the 'penultimate' choice: running every block gives different features."""
    weights = convert_open_clip_state_dict(open_clip_sd)
    zero_y = empty_text_context(build_text_encoder(weights, SPEC))
    # a spec one block deeper keeps every block of these weights
    all_blocks = empty_text_context(build_text_encoder(weights, replace(SPEC, text_layers=SPEC.text_layers + 1)))
    assert not torch.allclose(zero_y, all_blocks, atol=1e-3)


def test_vit_h_14_layout_converts_onto_the_transformers_models():
    """Full-size shapes on the meta device: every open_clip tensor lands on a parameter of the right shape."""
    weights = convert_open_clip_state_dict(open_clip_state_dict(VIT_H_14, meta=True))
    assert sum(t.numel() for t in weights.values()) == 986_109_441  # open_clip's ViT-H-14, incl. logit_scale
    with torch.device("meta"):
        vision = CLIPVisionModelWithProjection(vision_config())
        text = CLIPTextModel(text_config(num_layers=VIT_H_14.text_layers - 1))
    check_state_dict({k: v.shape for k, v in vision.state_dict().items()}, vision_weights(weights), "vision")
    prefix = "text_model." if hasattr(text, "text_model") else ""
    text_part = {prefix + k: v for k, v in text_weights(weights).items()}
    check_state_dict({k: v.shape for k, v in text.state_dict().items()}, text_part, "text")


def test_empty_prompt_tokens_are_open_clip_tokenisation_of_empty_string():
    tokens = empty_prompt_tokens()
    assert tokens.shape == (1, 77)
    assert tokens[0, :2].tolist() == [49406, 49407]
    assert tokens[0, 2:].eq(0).all()


def test_converter_names_unknown_keys(open_clip_sd):
    sd = dict(open_clip_sd) | {"visual.attnpool.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="visual.attnpool.weight"):
        convert_open_clip_state_dict(sd)


def test_configs_use_exact_gelu_and_open_clip_eps():
    for config in (vision_config(), text_config()):
        assert config.hidden_act == "gelu"
        assert config.layer_norm_eps == 1e-5
    assert (vision_config().hidden_size, vision_config().num_hidden_layers, vision_config().projection_dim) == (
        1280, 32, 1024)
    assert (text_config().hidden_size, text_config().num_hidden_layers, text_config().vocab_size) == (1024, 24, 49408)


def test_open_clip_bin_loads_through_the_cache(open_clip_sd, pixels, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(open_clip_sd, path)
    expected = reference_image_embedding(open_clip_sd, SPEC, pixels)
    cache = tmp_path / "cache"
    first = encode_image(load_image_encoder(path, cache, SPEC), pixels)
    cached = list(cache.glob("*.safetensors"))
    assert len(cached) == 1
    second = encode_image(load_image_encoder(path, cache, SPEC), pixels)
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, first)


def test_zero_y_is_cached_next_to_the_weights(open_clip_sd, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(open_clip_sd, path)
    cache = tmp_path / "cache"
    zero_y = load_zero_y(path, cache, SPEC)
    torch.testing.assert_close(zero_y, reference_zero_y(open_clip_sd, SPEC), atol=1e-5, rtol=1e-5)
    [cached] = cache.glob("*zero-y*.safetensors")
    assert cached.stat().st_size < 100_000
    torch.testing.assert_close(load_zero_y(path, cache, SPEC), zero_y)


def save_pretrained_clip(open_clip_sd: dict, spec, directory) -> None:
    """The open_clip weights as a transformers `CLIPModel` directory (what `save_pretrained` writes)."""
    config = CLIPConfig(text_config=text_config(spec).to_dict(), vision_config=vision_config(spec).to_dict(),
                        projection_dim=spec.embed_dim)
    model = CLIPModel(config)
    model.load_state_dict(convert_open_clip_state_dict(open_clip_sd), strict=False)
    model.save_pretrained(directory)


def _save_pretrained(open_clip_sd: dict, directory) -> None:
    save_pretrained_clip(open_clip_sd, SPEC, directory)


def test_transformers_directory_is_accepted(open_clip_sd, pixels, tmp_path):
    _save_pretrained(open_clip_sd, tmp_path / "clip")
    model = load_image_encoder(tmp_path / "clip", spec=SPEC)
    expected = reference_image_embedding(open_clip_sd, SPEC, pixels)
    torch.testing.assert_close(encode_image(model, pixels), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(load_zero_y(tmp_path / "clip", spec=SPEC), reference_zero_y(open_clip_sd, SPEC),
                               atol=1e-5, rtol=1e-5)


def test_directory_saved_by_older_transformers_with_position_ids_loads(open_clip_sd, pixels, tmp_path):
    """transformers < 4.31 stored `embeddings.position_ids` buffers; the current classes have none."""
    _save_pretrained(open_clip_sd, tmp_path / "clip")
    weights_file = tmp_path / "clip" / "model.safetensors"
    weights = load_file(weights_file)
    for tower, positions in (("vision_model", (SPEC.image_size // SPEC.patch_size) ** 2 + 1), ("text_model", 77)):
        weights[f"{tower}.embeddings.position_ids"] = torch.arange(positions)[None]
    save_file(weights, weights_file)
    model = load_image_encoder(tmp_path / "clip", spec=SPEC)
    expected = reference_image_embedding(open_clip_sd, SPEC, pixels)
    torch.testing.assert_close(encode_image(model, pixels), expected, atol=1e-5, rtol=1e-5)
    assert load_zero_y(tmp_path / "clip", spec=SPEC).shape[1] == 77


def test_transformers_directory_with_other_architecture_is_refused(open_clip_sd, tmp_path):
    _save_pretrained(open_clip_sd, tmp_path / "clip")
    config_file = tmp_path / "clip" / "config.json"
    config = json.loads(config_file.read_text())
    config["vision_config"]["hidden_act"] = "quick_gelu"
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="hidden_act"):
        read_clip_state_dict(tmp_path / "clip", SPEC)


def test_wrong_checkpoint_is_reported(tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({"model.diffusion_model.x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not an OpenCLIP checkpoint"):
        load_image_encoder(path, spec=SPEC)


def test_shape_mismatch_is_reported(open_clip_sd):
    wider = replace(SPEC, vision_width=64, vision_mlp=128)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_image_encoder(convert_open_clip_state_dict(open_clip_sd), wider)


def test_half_precision_build_keeps_dtype(open_clip_sd, pixels):
    model = build_image_encoder(convert_open_clip_state_dict(open_clip_sd), SPEC, dtype=torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    assert encode_image(model, pixels).dtype == torch.float16


def test_preprocessing_resizes_whole_frame_bilinear_without_crop():
    # a wide image: left half red, right half blue. A centre crop would lose the colours' proportions.
    array = np.zeros((60, 200, 3), dtype=np.uint8)
    array[:, :100] = (255, 0, 0)
    array[:, 100:] = (0, 0, 255)
    pixels = preprocess_reference(Image.fromarray(array))
    assert pixels.shape == (1, 3, 224, 224)
    resized = np.asarray(Image.fromarray(array).resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = (torch.from_numpy(resized).permute(2, 0, 1) / 255 - torch.tensor(IMAGE_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGE_STD).view(3, 1, 1)
    torch.testing.assert_close(pixels[0], expected, atol=1e-6, rtol=0)
    red = (1 - IMAGE_MEAN[0]) / IMAGE_STD[0]
    assert pixels[0, 0, :, :100].allclose(torch.tensor(red))  # left part still red after the resize
    assert pixels[0, 2, :, 124:].allclose(torch.tensor((1 - IMAGE_MEAN[2]) / IMAGE_STD[2]))


def test_preprocessing_drops_alpha():
    rgba = Image.new("RGBA", (10, 10), (0, 255, 0, 0))
    pixels = preprocess_reference(rgba)
    assert pixels.shape == (1, 3, 224, 224)
    assert pixels[0, 1].allclose(torch.tensor((1 - IMAGE_MEAN[1]) / IMAGE_STD[1]))
