"""Reading checkpoints in the released formats, strict loading, the converted-weights cache, hashing."""
from __future__ import annotations

import hashlib
import os
import pickle
import random
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from model.checkpoints import (
    OPEN_CLIP_FILE,
    SD21_FILE,
    UNET_FILE,
    CheckpointError,
    ModelFiles,
    cached_safetensors,
    file_sha256,
    load_strict,
    read_state_dict,
    short_hash,
)
from model.clip import build_image_encoder, convert_open_clip_state_dict, encode_image, load_image_encoder
from model.conformance import load_fixture
from model.vae import SCALE_FACTOR, decode_latent, load_vae
from tests.model.test_clip import SPEC, open_clip_state_dict


def small_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))


# --------------------------------------------------------------------------- released formats


def test_pth_of_a_module_loads_strictly(tmp_path):
    source = small_module()
    path = tmp_path / UNET_FILE
    torch.save(source.state_dict(), path)
    target = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    load_strict(target, read_state_dict(path), "UNet weights")
    x = torch.randn(5, 4)
    assert torch.equal(target(x), source(x))


def test_sd21_ckpt_yields_the_vae_only(reference, tmp_path):
    """A .ckpt like v2-1_512-ema-pruned.ckpt: {'state_dict': first_stage_model.* + the rest of SD}."""
    fixture = load_fixture(reference / "fixtures" / "vae_tiny.pt")[1]
    checkpoint = {f"first_stage_model.{k}": v for k, v in fixture["state_dict"].items()}
    checkpoint |= {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3),
                   "cond_stage_model.model.ln_final.weight": torch.ones(8)}
    path = tmp_path / SD21_FILE
    torch.save({"state_dict": checkpoint, "global_step": 875000}, path)
    kwargs = fixture["config"]["kwargs"]
    cache = tmp_path / "cache"
    for _ in range(2):  # converts, then reads the cache
        vae = load_vae(path, cache, ddconfig=kwargs["ddconfig"], embed_dim=kwargs["embed_dim"])
        decoded = decode_latent(vae, fixture["inputs"]["latent"] * SCALE_FACTOR)
        torch.testing.assert_close(decoded, fixture["outputs"]["decoded"], atol=1e-4, rtol=1e-4)
    assert len(list(cache.glob("*.sd21-vae.float32.*.safetensors"))) == 1


def test_open_clip_bin_loads(tmp_path):
    sd = open_clip_state_dict(SPEC)
    path = tmp_path / OPEN_CLIP_FILE
    torch.save(sd, path)
    loaded = read_state_dict(path)
    assert loaded.keys() == sd.keys()
    model = load_image_encoder(path, spec=SPEC)
    pixels = torch.randn(1, 3, SPEC.image_size, SPEC.image_size)
    expected = encode_image(build_image_encoder(convert_open_clip_state_dict(sd), SPEC), pixels)
    assert torch.equal(encode_image(model, pixels), expected)


def test_safetensors_load_onto_device(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"a": torch.arange(6.0).view(2, 3)}, path)
    loaded = read_state_dict(path, device="cpu")
    assert torch.equal(loaded["a"], torch.arange(6.0).view(2, 3))


def test_legacy_non_zip_pickle_still_loads(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))


# --------------------------------------------------------------------------- errors


def test_missing_released_file_names_where_it_is_expected(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{SD21_FILE} does not exist.*put it in {tmp_path}.*iic/unianimate"):
        read_state_dict(tmp_path / SD21_FILE)


@pytest.mark.parametrize("seed", range(40))
def test_garbage_file_is_not_a_checkpoint(tmp_path, seed):
    path = tmp_path / UNET_FILE
    path.write_bytes(random.Random(seed).randbytes(4096))  # random bytes trip many different unpickler errors
    with pytest.raises(CheckpointError, match=rf"(?i){UNET_FILE}.*re-download"):
        read_state_dict(path)


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / UNET_FILE
    torch.save(small_module().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated|damaged"):
        read_state_dict(path)


def test_truncated_safetensors_is_reported(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"a": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_state_dict(path)


class Executable:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"state_dict": Executable()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="not a plain tensor checkpoint") as error:
        read_state_dict(path)
    assert "weights_only" not in str(error.value)


def install_fake_class(monkeypatch, module_name: str, ran: list) -> type:
    """Registers a stand-in module (and its parent packages) holding a class that records any use;
    returns the class. `forget` removes them again, as on a machine without that package."""

    class ModelCheckpoint:
        def __init__(self, monitor):
            self.monitor = monitor

        def __setstate__(self, state):
            ran.append("setstate")
            self.__dict__.update(state)

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module_name, "ModelCheckpoint"
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    sys.modules[module_name].ModelCheckpoint = ModelCheckpoint
    return ModelCheckpoint


def forget(module_name: str) -> None:
    parts = module_name.split(".")
    for i in range(len(parts), 0, -1):
        sys.modules.pop(".".join(parts[:i]), None)


def test_lightning_bookkeeping_beside_the_weights_is_skipped_without_running_it(tmp_path, monkeypatch):
    """SD `.ckpt` files may pickle the trainer's ModelCheckpoint callback next to `state_dict`."""
    name = "pytorch_lightning.callbacks.model_checkpoint"
    ran: list[str] = []
    callback = install_fake_class(monkeypatch, name, ran)
    weight = torch.randn(4, 4)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"first_stage_model.w": weight}, "global_step": 7,
                "callbacks": {callback: callback("val/loss")}}, path)
    forget(name)
    loaded = read_state_dict(path)
    assert list(loaded) == ["first_stage_model.w"] and torch.equal(loaded["first_stage_model.w"], weight)
    assert ran == []  # the file's class was never imported or called


def test_other_foreign_classes_are_still_refused(tmp_path, monkeypatch):
    name = "somepackage.trainer"
    callback = install_fake_class(monkeypatch, name, [])
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "cb": callback("x")}, path)
    forget(name)
    with pytest.raises(CheckpointError, match="somepackage.trainer.ModelCheckpoint"):
        read_state_dict(path)


def test_non_state_dict_content_is_reported(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        read_state_dict(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match="holds no tensors.*epoch"):
        read_state_dict(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unsupported checkpoint extension '\.npz'"):
        read_state_dict(path)


def test_missing_and_unexpected_keys_are_counted_and_named():
    sd = small_module().state_dict()
    del sd["0.weight"], sd["0.bias"]
    sd |= {f"extra.{i}": torch.zeros(1) for i in range(7)}
    with pytest.raises(CheckpointError) as error:
        load_strict(small_module(), sd, "UNet weights")
    message = str(error.value)
    assert message.startswith("UNet weights does not fit the model")
    assert "2 missing keys: 0.weight, 0.bias" in message
    assert "7 unexpected keys: extra.0, extra.1, extra.2, extra.3, extra.4, ... (2 more)" in message


def test_shape_mismatches_are_named_with_both_shapes():
    sd = small_module().state_dict()
    sd["2.weight"] = torch.zeros(5, 3)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches: 2\.weight: checkpoint \(5, 3\) vs model \(2, 3\)"):
        load_strict(small_module(), sd, "UNet weights")


def test_meta_module_adopts_tensors_in_their_dtype():
    sd = {k: v.to(torch.float16) for k, v in small_module().state_dict().items()}
    with torch.device("meta"):
        module = small_module()
    load_strict(module, sd, "weights")
    assert all(p.device.type == "cpu" and p.dtype == torch.float16 for p in module.parameters())
    assert module[0].weight.data_ptr() == sd["0.weight"].data_ptr()  # adopted, not copied


# --------------------------------------------------------------------------- released file discovery


def _touch(directory, *names):
    for name in names:
        (directory / name).write_bytes(b"x")


def test_discover_finds_released_files(tmp_path):
    _touch(tmp_path, UNET_FILE, SD21_FILE, OPEN_CLIP_FILE, "dw-ll_ucoco_384.onnx")
    files = ModelFiles.discover(tmp_path)
    assert files.unet == tmp_path / UNET_FILE
    assert files.sd21 == tmp_path / SD21_FILE
    assert files.open_clip == tmp_path / OPEN_CLIP_FILE
    assert files.pose_estimator == tmp_path / "dw-ll_ucoco_384.onnx"
    assert files.person_detector is None


def test_discover_lists_every_missing_file(tmp_path):
    _touch(tmp_path, SD21_FILE)
    with pytest.raises(CheckpointError, match=rf"missing {UNET_FILE} .*, {OPEN_CLIP_FILE} .*iic/unianimate"):
        ModelFiles.discover(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ModelFiles.discover(tmp_path / "nope")


# --------------------------------------------------------------------------- cache and hashes


def test_cache_converts_once_and_again_when_the_source_changes(tmp_path):
    source = tmp_path / "model.pth"
    torch.save({"w": torch.full((3,), 1.5)}, source)
    calls = []

    def convert(path):
        calls.append(path)
        return {"renamed": read_state_dict(path)["w"] * 2, "steps": torch.arange(3)}

    cache = tmp_path / "cache"
    first = cached_safetensors(source, cache, convert, tag="t", dtype=torch.float16)
    second = cached_safetensors(source, cache, convert, tag="t", dtype=torch.float16)
    assert len(calls) == 1
    assert first["renamed"].dtype == torch.float16 and first["steps"].dtype == torch.int64
    assert torch.equal(second["renamed"], torch.full((3,), 3.0, dtype=torch.float16))

    torch.save({"w": torch.full((3,), 2.0)}, source)
    os.utime(source, ns=(1, 1))  # a different mtime, whatever the clock resolution
    third = cached_safetensors(source, cache, convert, tag="t", dtype=torch.float16)
    assert len(calls) == 2
    assert torch.equal(third["renamed"], torch.full((3,), 4.0, dtype=torch.float16))
    assert len(list(cache.glob("model.t.float16.*.safetensors"))) == 1  # the stale entry is gone


def test_a_worker_converting_at_the_same_time_keeps_the_others_file(tmp_path, monkeypatch):
    """Two workers on one shared cache both miss it and convert; the one finishing second must not
    delete the file the first just wrote (a third worker may be reading it)."""
    source = tmp_path / "model.pth"
    torch.save({"w": torch.ones(2)}, source)
    cache = tmp_path / "cache"
    cached_safetensors(source, cache, lambda p: read_state_dict(p), tag="t", dtype=torch.float16)  # an old dtype
    written: list = []

    def convert_while_another_worker_finishes(path):
        # the other worker's result lands while this one is still converting
        written.append(cached_safetensors(source, cache, lambda p: read_state_dict(p), tag="t",
                                          dtype=torch.float32))
        [finished] = cache.glob("model.t.float32.*.safetensors")
        written.append(finished.open("rb"))  # held open, as a memory-mapped reader would
        return read_state_dict(path)

    unlinked: list[str] = []
    real_unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (unlinked.append(self.name), real_unlink(self, *a, **k)))
    mine = cached_safetensors(source, cache, convert_while_another_worker_finishes, tag="t", dtype=torch.float32)
    [target] = cache.glob("model.t.*.safetensors")  # one file: the float16 leftover is gone, the target kept
    assert target.name not in unlinked, "the other worker's finished file was deleted (it is replaced atomically)"
    assert any(".float16." in name for name in unlinked)
    assert ".float32." in target.name and torch.equal(mine["w"], torch.ones(2))
    assert torch.equal(read_state_dict(target)["w"], torch.ones(2))
    written[1].close()


def test_cache_dir_none_converts_without_writing(tmp_path):
    source = tmp_path / "model.pth"
    torch.save({"w": torch.ones(2)}, source)
    result = cached_safetensors(source, None, lambda p: read_state_dict(p), tag="t", dtype=torch.bfloat16)
    assert result["w"].dtype == torch.bfloat16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


def test_sha256_and_short_hash(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"unianimate" * 1000)
    expected = hashlib.sha256(b"unianimate" * 1000).hexdigest()
    assert file_sha256(path) == expected
    assert short_hash(path) == expected[:10]
    cache = tmp_path / "cache"
    assert file_sha256(path, cache) == expected
    assert expected in (cache / "sha256.json").read_text()
    # the remembered digest is used while size and mtime are unchanged
    index = (cache / "sha256.json").read_text().replace(expected, "f" * 64)
    (cache / "sha256.json").write_text(index)
    assert file_sha256(path, cache) == "f" * 64
