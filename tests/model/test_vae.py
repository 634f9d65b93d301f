"""The diffusers VAE against the original's golden outputs, plus encoding/decoding behaviour."""
from __future__ import annotations

import pytest
import torch

from model.checkpoints import CheckpointError
from model.conformance import load_fixture
from model.conformance.vae import check_vae_fixture, check_vae_layout
from model.vae import (
    SCALE_FACTOR,
    SD21_DDCONFIG,
    TINY_DDCONFIG,
    build_vae,
    convert_ldm_vae_state_dict,
    decode_latent,
    decode_latent_chunks,
    encode_posterior,
    encode_to_latent,
    load_vae,
    vae_config_from_ddconfig,
    vae_weights_from_checkpoint,
)


@pytest.fixture(scope="module")
def fixture(reference):
    return load_fixture(reference / "fixtures" / "vae_tiny.pt")[1]


@pytest.fixture(scope="module")
def vae(fixture):
    kwargs = fixture["config"]["kwargs"]
    return build_vae(convert_ldm_vae_state_dict(fixture["state_dict"]), kwargs["ddconfig"], kwargs["embed_dim"])


def test_golden_fixture_passes(reference, fixture):
    result = check_vae_fixture(reference / "fixtures" / "vae_tiny.pt", fixture)
    assert result.passed, result.detail
    assert result.worst_error < 1e-4


def test_released_checkpoint_layout_passes(reference):
    path = reference / "sd21_vae_state_dict.json"
    result = check_vae_layout(path, load_fixture(path)[1])
    assert result.passed, result.detail
    assert "83,653,863" in result.detail


def test_layout_check_catches_a_missing_key(reference):
    path = reference / "sd21_vae_state_dict.json"
    data = load_fixture(path)[1]
    data["keys"] = dict(list(data["keys"].items())[:-1])
    result = check_vae_layout(path, data)
    assert not result.passed
    assert "missing" in result.detail


def test_decoder_levels_are_reversed(fixture):
    converted = convert_ldm_vae_state_dict(fixture["state_dict"])
    # ldm `up.0` is the full-resolution level, which diffusers runs last
    assert torch.equal(converted["decoder.up_blocks.1.resnets.0.conv1.weight"],
                       fixture["state_dict"]["decoder.up.0.block.0.conv1.weight"])
    assert converted["encoder.mid_block.attentions.0.to_q.weight"].shape == (64, 64)


def test_unknown_keys_are_named(fixture):
    sd = dict(fixture["state_dict"]) | {"encoder.down.0.attn.0.q.weight": torch.zeros(1), "loss.logvar": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"2 keys .*encoder\.down\.0\.attn\.0\.q\.weight.*loss\.logvar"):
        convert_ldm_vae_state_dict(sd)


def test_checkpoint_without_vae_is_refused(tmp_path):
    with pytest.raises(ValueError, match="first_stage_model"):
        vae_weights_from_checkpoint({"model.diffusion_model.x": torch.zeros(1)})
    path = tmp_path / "unet.pth"
    torch.save({"model.diffusion_model.x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=r"unet\.pth does not hold the SD 2\.1 VAE"):
        load_vae(path)


def test_sd21_config_translation():
    config = vae_config_from_ddconfig(SD21_DDCONFIG, 4)
    assert config["block_out_channels"] == [128, 256, 512, 512]
    assert config["layers_per_block"] == 2
    assert config["latent_channels"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [({"attn_resolutions": [16]}, "attn_resolutions"), ({"double_z": False}, "double_z"), ({"z_channels": 8}, "embed_dim")],
)
def test_unsupported_ddconfigs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        vae_config_from_ddconfig({**SD21_DDCONFIG, **change}, 4)


def test_mean_latent_is_scaled_posterior_mean(vae, fixture):
    image = fixture["inputs"]["image"]
    latent = encode_to_latent(vae, image, sample=False)
    torch.testing.assert_close(latent, fixture["outputs"]["posterior_mean"] * SCALE_FACTOR, atol=1e-4, rtol=1e-4)


def test_sampled_latent_draws_float32_cpu_noise_from_the_generator(vae, fixture):
    image = fixture["inputs"]["image"]
    posterior = encode_posterior(vae, image)
    latent = encode_to_latent(vae, image, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(latent, (posterior.mean + posterior.std * noise) * SCALE_FACTOR)
    again = encode_to_latent(vae, image, generator=torch.Generator().manual_seed(7))
    other = encode_to_latent(vae, image, generator=torch.Generator().manual_seed(8))
    assert torch.equal(latent, again)
    assert not torch.allclose(latent, other)


def test_decode_takes_scaled_latents_and_chunking_does_not_change_frames(vae, fixture):
    latents = torch.cat([fixture["inputs"]["latent"]] * 2) * SCALE_FACTOR  # 4 frames
    whole = vae.decode(latents / SCALE_FACTOR).sample
    for chunk_size in (1, 3, 8):
        torch.testing.assert_close(decode_latent(vae, latents, chunk_size), whole, atol=1e-5, rtol=1e-5)
    assert [c.shape[0] for c in decode_latent_chunks(vae, latents, chunk_size=3)] == [3, 1]
    with pytest.raises(ValueError, match="chunk_size"):
        decode_latent(vae, latents, chunk_size=0)


def test_tiled_decode_matches_when_one_tile_covers_the_frame(vae, fixture):
    latents = fixture["inputs"]["latent"] * SCALE_FACTOR
    tiled = decode_latent(vae, latents, tiled=True)
    torch.testing.assert_close(tiled, decode_latent(vae, latents), atol=1e-5, rtol=1e-5)


def test_random_tiny_vae_is_seeded_and_downsamples_by_8():
    a, b = build_vae(ddconfig=TINY_DDCONFIG, seed=3), build_vae(ddconfig=TINY_DDCONFIG, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    latent = encode_to_latent(a, torch.zeros(1, 3, 32, 48), sample=False)
    assert latent.shape == (1, 4, 4, 6)
    assert decode_latent(a, latent).shape == (1, 3, 32, 48)


def test_weights_are_adopted_in_the_requested_dtype(fixture):
    kwargs = fixture["config"]["kwargs"]
    weights = convert_ldm_vae_state_dict(fixture["state_dict"])
    half = build_vae(weights, kwargs["ddconfig"], kwargs["embed_dim"], dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in half.parameters())
    assert decode_latent(half, fixture["inputs"]["latent"]).dtype == torch.bfloat16
