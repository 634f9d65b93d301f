"""The reproducibility manifest: everything that produced a job's video, next to the MP4.

`jobs/{id}/manifest.json` (schema: service/jobs/manifest.schema.json) names the service version,
the model and the sha256 of every weight file, dtype and device class, the params as applied
(defaults resolved), the job seed and each segment's seed and frame range, the inputs' sha256, the
pose alignment, the frame timing and the library versions. `unianimate reproduce` (cli/reproduce.py)
renders the same video from it; on the same device class the frames are identical.

The model facts (weight hashes above all: gigabytes to read) are worked out once per process.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from model.longvideo.planner import SegmentPlan
from model.longvideo.protocol import SegmentRenderer
from model.longvideo.video import RenderOptions
from model.motion import Motion
from service.jobs.record import Job
from service.storage.objects import Storage, manifest_key
from worker.settings import WorkerSettings

MANIFEST_VERSION = 1
PACKAGE = "unianimate-service"
POSE_SOURCES = ("pose_keypoints", "pose_video")


def store_manifest(storage: Storage, manifest: dict[str, Any]) -> str:
    """Uploads the manifest next to the result; returns its key."""
    key = manifest_key(manifest["job_id"])
    storage.put_bytes(key, json.dumps(manifest, indent=2, sort_keys=True).encode(), "application/json")
    return key


def build_manifest(job: Job, *, renderer: SegmentRenderer, settings: WorkerSettings, options: RenderOptions,
                   motion: Motion, plan: SegmentPlan, files: dict[str, Path], audio: bool,
                   video: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a job that just rendered `video` (frames, fps, duration_s, sha256, size)."""
    chained = options.mode == "chain"
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job.id,
        "service": service_version(),
        "model": model_facts(renderer, settings),
        "params": job.params.model_dump(mode="json"),
        "render_options": _plain(dataclasses.asdict(options)),
        "seed": job.params.seed,
        "seed_plan": {"base_seed": options.sampling.seed,
                      "changes": [list(change) for change in options.sampling.seed_changes]},
        "segments": [{"index": s.index, "start": s.start, "stop": s.stop, "first_new": s.first_new,
                      "seed": options.sampling.seed_of(s.index)} for s in plan.segments] if chained else [],
        "rerender_of": job.rerender_of.model_dump(mode="json") if job.rerender_of else None,
        "inputs": {name: _file_facts(path) for name, path in sorted(files.items())},
        "pose_source": next(({"name": name, **_file_facts(files[name])} for name in POSE_SOURCES if name in files),
                            None),
        "alignment": _plain(motion.alignment),
        "timing": {"frame_interval": motion.frame_interval, "fps": _fraction(motion.fps),
                   "frames": video["frames"], "duration_s": video["duration_s"], "audio": audio},
        "output": {"key": video["key"], "sha256": video["sha256"], "size_bytes": video["size_bytes"],
                   "width": options.width, "height": options.height},
        "libraries": library_versions(),
    }


@functools.cache
def service_version() -> dict[str, str | None]:
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"package": PACKAGE, "version": version, "git_commit": _git_commit()}


def _git_commit() -> str | None:
    """UNIANIMATE_GIT_COMMIT (set by the image build), else the checkout's HEAD, else unknown."""
    if commit := os.environ.get("UNIANIMATE_GIT_COMMIT"):
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


_MODEL_FACTS: dict[int, dict[str, Any]] = {}


def model_facts(renderer: SegmentRenderer, settings: WorkerSettings) -> dict[str, Any]:
    """Label, weights, architecture, dtype and device class of the loaded model (cached per renderer)."""
    if id(renderer) not in _MODEL_FACTS:
        architecture = getattr(renderer, "architecture", None)
        _MODEL_FACTS[id(renderer)] = {
            "label": renderer.label,
            "untrained": renderer.untrained,
            "weights": weight_facts(settings),
            "architecture": _plain(dataclasses.asdict(architecture)) if architecture is not None else None,
            "temporal": architecture.unet.temporal if architecture is not None else None,
            "dtype": str(getattr(renderer, "dtype", "unknown")).removeprefix("torch."),
            "device_class": device_class(getattr(renderer, "device", "cpu")),
        }
    return _MODEL_FACTS[id(renderer)]


def weight_facts(settings: WorkerSettings) -> dict[str, Any]:
    """The tiny model is its seed; the released one is the sha256 of each file it loaded."""
    if settings.model == "tiny":
        return {"kind": "tiny", "seed": settings.tiny_seed}
    from model.checkpoints import ModelFiles

    files = ModelFiles.discover(settings.checkpoint_dir)
    return {"kind": "checkpoint",
            "unet": _weight_file(files.unet, settings.cache_dir),
            "vae_source": _weight_file(files.sd21, settings.cache_dir),
            "clip": _weight_file(files.open_clip, settings.cache_dir)}


def _weight_file(path: Path, cache_dir: Path | None) -> dict[str, str]:
    from model.checkpoints import file_sha256

    if path.is_dir():  # a transformers CLIP folder: one hash over its files' names and hashes
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path)}:{file_sha256(item, cache_dir)}\n".encode())
        return {"name": path.name + "/", "sha256": digest.hexdigest()}
    return {"name": path.name, "sha256": file_sha256(path, cache_dir)}


def device_class(device: Any) -> str:
    """Same class, same frames: `cpu` (with the CPU model), or `cuda:<GPU name>`."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}"


@functools.cache
def library_versions() -> dict[str, Any]:
    import av
    import torch

    versions: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                                "numpy": np.__version__, "pyav": av.__version__,
                                "ffmpeg": {name: ".".join(map(str, v)) for name, v in av.library_versions.items()},
                                "torch_threads": torch.get_num_threads()}
    try:
        versions["libx264"] = av.codec.Codec("libx264", "w").long_name
    except Exception:  # noqa: BLE001  (an FFmpeg build without it could not have made the video)
        versions["libx264"] = None
    for module, name in (("cv2", "opencv"), ("PIL", "pillow")):
        try:
            versions[name] = __import__(module).__version__
        except ImportError:
            versions[name] = None
    return versions


def _file_facts(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "size_bytes": path.stat().st_size}


def _fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _plain(value: Any) -> Any:
    """JSON types only: tuples become lists, numpy scalars numbers, mappings dicts."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Fraction):
        return _fraction(value)
    return value
