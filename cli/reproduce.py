"""`unianimate reproduce`: render a job's video again from its manifest.json.

    unianimate reproduce manifest.json --out again.mp4 --reference person.png \
        --reference-keypoints person.json --pose-keypoints dance.json [--checkpoint-dir /models]

The inputs and weights must be the ones the manifest names (their sha256 is checked first). On the
same device class (`model.device_class` in the manifest) the frames are identical.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from model.longvideo.chain import SamplingOptions
from model.longvideo.video import RenderOptions, render_video
from model.motion import is_skeleton_video, prepare_motion

INPUT_FLAGS = {"reference_image": "--reference", "reference_keypoints": "--reference-keypoints",
               "pose_keypoints": "--pose-keypoints", "pose_video": "--pose-video"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unianimate reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="a job's manifest.json (GET /jobs/{id}/manifest)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the MP4")
    for name, flag in INPUT_FLAGS.items():
        parser.add_argument(flag, dest=name, type=Path, help=f"the job's {name} input")
    parser.add_argument("--checkpoint-dir", type=Path, help="the weights the manifest names (not for the tiny model)")
    parser.add_argument("--dwpose-dir", type=Path, help="DWPose, when the job extracted poses from camera footage")
    parser.add_argument("--device", help="default: the manifest's device type (cpu or cuda)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = json.loads(args.manifest.read_text())
        files = check_inputs(manifest, args)
        renderer = load_renderer(manifest, args)
        options = render_options(manifest)
        motion = load_motion(manifest, files, args)
    except (ValueError, OSError, KeyError) as exc:
        print(f"unianimate reproduce: error: {exc}", file=sys.stderr)
        return 2
    result = render_video(renderer, motion.reference_image, motion.ref_pose, motion.poses, args.out,
                          fps=motion.fps, options=options,
                          audio_source=motion.audio_source if manifest["timing"]["audio"] else None)
    print(f"{result.path}: {result.frames} frames at {float(result.fps):g} fps, {result.duration_s:.3f} s")
    return 0


def check_inputs(manifest: dict[str, Any], args: argparse.Namespace) -> dict[str, Path]:
    """Exactly the manifest's inputs, each with the sha256 it names."""
    files = {}
    for name, facts in manifest["inputs"].items():
        path = getattr(args, name, None)
        if path is None:
            raise ValueError(f"the job used {name}: give it with {INPUT_FLAGS[name]}")
        if _sha256(path) != facts["sha256"]:
            raise ValueError(f"{INPUT_FLAGS[name]} {path} is not the job's {name} (sha256 differs)")
        files[name] = path
    extra = [INPUT_FLAGS[name] for name in INPUT_FLAGS if getattr(args, name) and name not in manifest["inputs"]]
    if extra:
        raise ValueError(f"the job had no input for {', '.join(extra)}; leave it out")
    return files


def load_renderer(manifest: dict[str, Any], args: argparse.Namespace):
    import torch

    from model.pipeline import DTYPES, UniAnimatePipeline

    model = manifest["model"]
    device = args.device or model["device_class"].split(":")[0]
    dtype = next(value for value in DTYPES.values() if str(value) == f"torch.{model['dtype']}")
    weights = model["weights"]
    if weights["kind"] == "tiny":
        return UniAnimatePipeline.tiny(seed=weights["seed"], device=device, dtype=dtype,
                                       temporal=model["temporal"] or "transformer")
    if args.checkpoint_dir is None:
        raise ValueError(f"the job used {model['label']}: give its folder with --checkpoint-dir")
    from model.checkpoints import ModelFiles, file_sha256

    files = ModelFiles.discover(args.checkpoint_dir)
    for role, path in (("unet", files.unet), ("vae_source", files.sd21)):
        if file_sha256(path) != weights[role]["sha256"]:
            raise ValueError(f"{path} is not the {role} weight file the job used (sha256 differs)")
    del torch
    return UniAnimatePipeline.from_checkpoint_dir(args.checkpoint_dir, device=device, dtype=dtype)


def render_options(manifest: dict[str, Any]) -> RenderOptions:
    options = dict(manifest["render_options"])
    sampling = dict(options.pop("sampling"))
    sampling["seed_changes"] = tuple(tuple(change) for change in sampling.get("seed_changes", ()))
    return RenderOptions(**options, sampling=SamplingOptions(**sampling))


def load_motion(manifest: dict[str, Any], files: dict[str, Path], args: argparse.Namespace):
    """As the worker prepared it (worker/job_inputs.py), from the params as applied."""
    params = manifest["params"]
    videos = {}
    if "pose_video" in files:
        role = "skeleton_video" if is_skeleton_video(files["pose_video"]) else "driving_video"
        videos[role] = files["pose_video"]
    extractor = None
    if "reference_keypoints" not in files or "driving_video" in videos:
        from model.pose.extract import DWPoseExtractor

        extractor = DWPoseExtractor(args.dwpose_dir, device="auto")
    motion = prepare_motion(reference_image=files["reference_image"],
                            reference_keypoints=files.get("reference_keypoints"),
                            pose_keypoints=files.get("pose_keypoints"), **videos,
                            height=params["height"], width=params["width"], frame_interval=params["frame_interval"],
                            output_fps=params["fps"], max_duration_s=params["max_duration_s"],
                            align=params["align_pose"], extractor=extractor)
    if Fraction(manifest["timing"]["fps"]) != motion.fps or len(motion.poses) != manifest["timing"]["frames"]:
        raise ValueError(f"the motion gives {len(motion.poses)} frames at {motion.fps} fps, the manifest "
                         f"{manifest['timing']['frames']} at {manifest['timing']['fps']}: not the same inputs or version")
    return motion


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
