"""Reading the released checkpoint files, strict loading, and a converted-weights cache.

The released files come in three pickle flavours (`.pth`, `.ckpt`, `.bin`) and are read with
`torch.load(weights_only=True, mmap=True)`: no code from the file runs, and a multi-gigabyte file such
as the SD 2.1 checkpoint (of which only the 84M-parameter VAE is used) is paged in lazily instead of
being copied into memory. Converted weights are cached as safetensors so that later starts skip both
the pickle and the conversion and load straight onto the target device.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

StateDict = dict[str, torch.Tensor]

UNET_FILE = "unianimate_16f_32f_non_ema_223000.pth"
SD21_FILE = "v2-1_512-ema-pruned.ckpt"
OPEN_CLIP_FILE = "open_clip_pytorch_model.bin"
# Instead of OPEN_CLIP_FILE: the same weights already in transformers' layout (`save_pretrained`).
CLIP_DIR = "clip"
POSE_ESTIMATOR_FILE = "dw-ll_ucoco_384.onnx"
PERSON_DETECTOR_FILE = "yolox_l.onnx"

DOWNLOAD_HINT = (
    "The released UniAnimate weights are published as ModelScope model 'iic/unianimate' "
    "(`modelscope.hub.snapshot_download('iic/unianimate')`); put the files directly in the checkpoint directory."
)

_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_SHOW = 5  # how many offending keys an error message lists


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model it is loaded into."""


# --------------------------------------------------------------------------- the released files


@dataclass(frozen=True)
class ModelFiles:
    """Where the released weight files are. The ONNX pose models are only needed to extract poses."""

    unet: Path
    sd21: Path
    open_clip: Path  # OPEN_CLIP_FILE, or a transformers CLIP directory
    pose_estimator: Path | None = None
    person_detector: Path | None = None

    @classmethod
    def discover(cls, checkpoint_dir: str | os.PathLike) -> ModelFiles:
        """Finds the released files by their published names; lists every required one that is absent."""
        root = Path(checkpoint_dir)
        if not root.is_dir():
            raise CheckpointError(f"checkpoint directory {root} does not exist. {DOWNLOAD_HINT}")
        required = {UNET_FILE: "the UniAnimate UNet", SD21_FILE: "Stable Diffusion 2.1, for its VAE"}
        missing = [f"{name} ({role})" for name, role in required.items() if not (root / name).is_file()]
        open_clip = _open_clip_weights(root)
        if open_clip is None:
            missing.append(f"{OPEN_CLIP_FILE} (OpenCLIP ViT-H/14; or a transformers CLIP directory {CLIP_DIR}/)")
        if missing:
            raise CheckpointError(f"checkpoint directory {root} is missing {', '.join(missing)}. {DOWNLOAD_HINT}")

        def optional(name: str) -> Path | None:
            return root / name if (root / name).is_file() else None

        return cls(
            unet=root / UNET_FILE,
            sd21=root / SD21_FILE,
            open_clip=open_clip,
            pose_estimator=optional(POSE_ESTIMATOR_FILE),
            person_detector=optional(PERSON_DETECTOR_FILE),
        )


def _open_clip_weights(root: Path) -> Path | None:
    """The released OpenCLIP file if present, else a converted transformers directory."""
    if (root / OPEN_CLIP_FILE).is_file():
        return root / OPEN_CLIP_FILE
    if (root / CLIP_DIR / "config.json").is_file():
        return root / CLIP_DIR
    return None


# --------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> StateDict:
    """Reads a `.safetensors`, `.pth`, `.pt`, `.ckpt` or `.bin` file into a flat {key: tensor} dict.

    A top-level `state_dict` entry (Lightning-style `.ckpt`, also accepted by the original UNet loader)
    is unwrapped. Pickles are memory-mapped on the CPU; safetensors load straight onto `device`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist. {_expected_hint(path)}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device=str(device))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); re-download or delete it") from exc
    if path.suffix not in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint extension {path.suffix!r} (expected .safetensors or one of {_PICKLE_SUFFIXES})"
        )
    loaded = _torch_load(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (top-level keys: {_first(list(loaded))})")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors


class _TrainingBookkeeping:
    """Stands in for a Lightning training object pickled beside the weights; keeps nothing of it."""

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


# Globals that training frameworks pickle into checkpoints next to the tensors (the trainer's
# callbacks, e.g. pytorch_lightning's ModelCheckpoint in Stable Diffusion `.ckpt` files). They are
# replaced by `_TrainingBookkeeping` instead of being imported, so no code from the file runs.
_BOOKKEEPING_MODULES = ("pytorch_lightning.", "lightning.", "lightning_fabric.")
_MAX_STUBBED_GLOBALS = 16


def _torch_load(path: Path) -> object:
    """torch.load without running code from the file; mmap when the file is in the zip format."""
    stubs: list[tuple[type, str]] = []
    while True:
        try:
            with torch.serialization.safe_globals(stubs):
                return _torch_load_once(path)
        except pickle.UnpicklingError as exc:
            name = _bookkeeping_global(exc)
            if name is None or len(stubs) >= _MAX_STUBBED_GLOBALS:
                raise _unreadable(path, exc) from exc
            stubs.append((_TrainingBookkeeping, name))


def _bookkeeping_global(exc: pickle.UnpicklingError) -> str | None:
    """The training-framework global a weights-only load refused, if that is why it failed."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found and found[1].startswith(_BOOKKEEPING_MODULES):
        return found[1]
    return None


def _unreadable(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    return CheckpointError(
        f"{path} is damaged or not a plain tensor checkpoint ({_unpickler_reason(exc)}); only PyTorch state "
        f"dicts are read, and no code from a checkpoint file is run. Re-download it"
    )


def _torch_load_once(path: Path) -> object:
    mmap = zipfile.is_zipfile(path)  # the legacy (pre-1.6) tar format cannot be memory-mapped
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise  # weights_only refuses arbitrary Python objects; a truncated or foreign file lands here too
    except Exception as exc:  # torch's legacy unpickler fails on garbage with any exception type
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or not a checkpoint: {_one_line(exc)}); "
            f"re-download it"
        ) from exc


def _expected_hint(path: Path) -> str:
    known = {UNET_FILE, SD21_FILE, OPEN_CLIP_FILE, POSE_ESTIMATOR_FILE, PERSON_DETECTOR_FILE}
    if path.name in known:
        return f"It is one of the released files; put it in {path.parent}. {DOWNLOAD_HINT}"
    return f"Released file names: {', '.join(sorted(known))}."


# --------------------------------------------------------------------------- strict loading


def check_state_dict(expected: Mapping[str, torch.Size], state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raises a CheckpointError naming missing keys, unexpected keys and shape mismatches (first few of each)."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_first(mismatched)}")
    if problems:
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(problems)
                              + ". Is this the right file for this model?")


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Loads every key or raises a CheckpointError saying what does not fit.

    A module built on the meta device adopts the given tensors as they are (device and dtype included),
    so weights are never allocated twice; otherwise they are copied in.
    """
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_state_dict(expected, state_dict, what)
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(state_dict, strict=True, assign=on_meta)
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{what}: tensors not filled by the checkpoint: {_first(left)}")
    return module


# --------------------------------------------------------------------------- converted-weights cache


def cached_safetensors(
    src: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    convert_fn: Callable[[Path], StateDict],
    tag: str,
    dtype: torch.dtype = torch.float16,
    device: str | torch.device = "cpu",
) -> StateDict:
    """Returns `convert_fn(src)` with floating tensors cast to `dtype`, converting once and caching the result.

    The cache file in `cache_dir` is named after the source (path, size and modification time of the file,
    or of the files in a directory), the converter `tag` and the dtype, so a replaced source or a changed
    conversion (change the tag) is converted again; older cache files of the same source and tag are
    removed. It is read memory-mapped, straight onto `device`. `cache_dir=None` converts without caching.
    """
    src = Path(src)
    if not src.exists():
        raise CheckpointError(f"checkpoint file {src} does not exist. {_expected_hint(src)}")
    if cache_dir is None:
        return {k: _cast(v, dtype).to(device) for k, v in convert_fn(src).items()}
    dtype_name = str(dtype).removeprefix("torch.")
    identity = f"{_source_identity(src)}|{tag}|{dtype_name}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{src.stem}.{tag}.{dtype_name}.{key}.safetensors"
    if not target.is_file():
        # own copies: converted tensors may be views of one source tensor (split q/k/v), which older
        # safetensors releases refuse to save
        tensors = {k: _cast(v, dtype, copy=True).contiguous() for k, v in convert_fn(src).items()}
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Workers sharing a cache may convert at once: each writes its own partial file and renames it
        # over the target (atomic; same content), and only files of *other* identities are removed.
        for stale in cache_dir.glob(f"{src.stem}.{tag}.*.safetensors"):
            if stale != target:
                stale.unlink(missing_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        save_file(tensors, partial, metadata={"source": src.name, "identity": identity})
        os.replace(partial, target)  # atomic: a crash never leaves a half-written cache file behind
    return read_state_dict(target, device=device)


def _source_identity(src: Path) -> str:
    files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    return ";".join(f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files)


def _cast(tensor: torch.Tensor, dtype: torch.dtype, copy: bool = False) -> torch.Tensor:
    return tensor.to(dtype=dtype if tensor.is_floating_point() else tensor.dtype, copy=copy)


def file_sha256(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 of a file, hex. Hashing a 5 GB checkpoint takes a while, so with `cache_dir` the digest is
    remembered in `sha256.json` there, keyed by the file's path, size and modification time."""
    path = Path(path)
    stat = path.stat()
    entry = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = Path(cache_dir) / "sha256.json" if cache_dir is not None else None
    index = json.loads(index_file.read_text()) if index_file and index_file.is_file() else {}
    if entry in index:
        return index[entry]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if index_file is not None:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        index[entry] = hexdigest
        index_file.write_text(json.dumps(index, indent=1))
    return hexdigest


def short_hash(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """The first 10 hex digits of the file's SHA-256: a label that says which weights produced a video."""
    return file_sha256(path, cache_dir)[:10]


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


def _unpickler_reason(exc: BaseException) -> str:
    """The specific reason inside torch's long weights-only refusal (which suggests weights_only=False)."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(Check the documentation|$)", str(exc), re.DOTALL)
    return " ".join(found[1].split()) if found else _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
