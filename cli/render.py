"""`unianimate render`: animate a reference image along a pose sequence into an MP4, locally.

    unianimate render --reference person.png --reference-keypoints person.json \
        --pose-keypoints dance.json --fps 15 --out dance.mp4 --model tiny --height 192 --width 128 --steps 4

Without --height and --width the output has the reference photo's aspect ratio within the model's
768x512 area (model/frame_size.py).

One motion, several people: repeat --reference (and --reference-keypoints, in the same order) and
give --out a folder (one `<reference name>.mp4` each) or a pattern with {index} and/or {stem}. The
motion file is read once and its poses detected once; the model loads once.

    unianimate render --reference a.png --reference b.png --pose-keypoints dance.json --out renders/ ...

Long inputs are rendered segment by segment (first-frame chaining) or with the original's
sliding window (`--mode window`), and streamed to the MP4 as they finish.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cli.hints import in_cli_words
from model.conditions import CONDITION_SETS
from model.errors import RenderCancelled
from model.longvideo.chain import SamplingOptions
from model.longvideo.mp4 import DEFAULT_CRF, MAX_CRF
from model.longvideo.planner import DEFAULT_SEGMENT_FRAMES
from model.longvideo.progress import Progress
from model.longvideo.protocol import SegmentRenderer
from model.longvideo.seeds import MAX_SEED
from model.longvideo.video import MODES, RenderOptions, render_video
from model.motion import Motion, is_skeleton_video, load_image, prepare_motion
from model.pose.render import resize_like_original

DTYPES = ("fp16", "bf16", "fp32")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unianimate render", description=__doc__.split("\n\n")[0])
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--reference", dest="references", type=Path, action="append", required=True,
                        help="photo of the person (PNG/JPEG/WebP); repeat it to render one video per person")
    inputs.add_argument(
        "--reference-keypoints",
        dest="references_keypoints",
        type=Path,
        action="append",
        help="keypoint JSON of the reference photo (default: detected in the photo with DWPose); with several "
        "--reference, one per reference in the same order",
    )
    motion = inputs.add_mutually_exclusive_group(required=True)
    motion.add_argument(
        "--pose-keypoints", type=Path, help="OpenPose or DWPose keypoint JSON, one entry per frame"
    )
    motion.add_argument(
        "--pose-video",
        type=Path,
        help="a video of drawn skeletons, used as drawn (or camera footage with --extract-poses)",
    )
    inputs.add_argument(
        "--extract-poses",
        action="store_true",
        help="--pose-video is a real video: detect its poses with DWPose",
    )
    inputs.add_argument("--dwpose-dir", type=Path, help="folder with dw-ll_ucoco_384.onnx and yolox_l.onnx")
    inputs.add_argument("--canvas-width", type=int,
                        help="pixel width of the --pose-keypoints coordinates (default: from the file; needed "
                        "only with --no-align when the file does not say)")
    inputs.add_argument("--canvas-height", type=int, help="pixel height of the --pose-keypoints coordinates")
    inputs.add_argument("--first-frame", type=Path, help="an image the video must start from (chain mode)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where to write the MP4; with several --reference a folder, or a pattern with "
                        "{index} (0-based) and/or {stem} (the reference's file name without extension)")

    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--checkpoint-dir", type=Path, help="folder with the released UniAnimate, SD 2.1 and CLIP weights"
    )
    model.add_argument("--model", choices=["tiny"], help="'tiny': the untrained tiny model (random weights)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--dtype", choices=DTYPES, help="default: fp16 on cuda, fp32 on cpu")
    parser.add_argument(
        "--cpu-offload",
        action="store_true",
        help="park CLIP and the VAE on the CPU while the UNet samples (~12 GB of GPU memory at 768x512)",
    )

    render = parser.add_argument_group("rendering")
    size = "a multiple of 64 (16 for --model tiny); default: the reference's aspect ratio within 768x512"
    render.add_argument("--height", type=int, help=f"output height in pixels, {size}")
    render.add_argument("--width", type=int, help=f"output width in pixels, {size}")
    render.add_argument("--steps", type=int, default=30, help="DDIM steps")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
    render.add_argument(
        "--noise-prior-t", type=int,
        help="timestep the reference latent is noised to (0-999; default: 939 for chained, 949 for the original's sets)",
    )
    render.add_argument(
        "--conditions", choices=list(CONDITION_SETS), default="chained",
        help="what the model is conditioned on: 'chained' (reference latent, poses, and the previous segment's "
        "last frame) or one of the original short entrance's sets, to reproduce its outputs",
    )
    render.add_argument("--fps", type=float, help="frame rate of pose keypoints that do not state one")
    render.add_argument(
        "--frame-interval",
        type=int,
        help="use every K-th pose frame (default: the smallest K giving 15 fps or less)",
    )
    render.add_argument("--max-duration", type=float, help="stop after this many seconds of video")
    render.add_argument("--mode", choices=MODES, default="chain")
    render.add_argument("--segment-frames", type=int, default=DEFAULT_SEGMENT_FRAMES)
    render.add_argument("--context-size", type=int, default=32, help="window mode: frames per window")
    render.add_argument(
        "--context-overlap", type=int, default=8, help="window mode: frames shared by windows"
    )
    render.add_argument(
        "--context-batch-size", type=int, default=1, help="window mode: windows per UNet call"
    )
    render.add_argument(
        "--crf", type=int, default=DEFAULT_CRF, help=f"H.264 quality, 0 (lossless) to {MAX_CRF}"
    )
    render.add_argument(
        "--no-align",
        dest="align",
        action="store_false",
        help="use the keypoints as given instead of fitting them to the reference person "
        "(no effect on a --pose-video of drawn skeletons: there are no keypoints to fit)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuses flag values the render cannot use, naming the flag to fix (ValueError).

    Runs before any weights load: left alone, most of these fail only once the model is built,
    some only in the middle of the render.
    """
    _check_ranges(args)
    _check_combinations(args)
    _check_references(args)
    _check_frame_size(args)
    _check_device(args)
    _check_checkpoint_dir(args)


def _limits() -> dict[str, tuple[float, float, str]]:
    """Flag -> the lowest and highest value a render takes, and a hint for the message."""
    from model.schedule import NUM_TIMESTEPS  # imports torch: only once a render is about to start

    return {
        "--steps": (1, NUM_TIMESTEPS, "the original samples with 30"),
        "--noise-prior-t": (0, NUM_TIMESTEPS - 1, "the original's long-video setting is 939"),
        "--seed": (0, MAX_SEED, ""),
        "--guidance": (0, math.inf, ""),
        "--crf": (0, MAX_CRF, "0 is lossless"),
        "--segment-frames": (2, math.inf, "each segment repeats the previous one's last frame"),
        "--context-size": (1, math.inf, ""),
        "--context-overlap": (0, math.inf, ""),
        "--context-batch-size": (1, math.inf, ""),
        "--frame-interval": (1, math.inf, ""),
    }


def _check_ranges(args: argparse.Namespace) -> None:
    for flag, (low, high, hint) in _limits().items():
        value = getattr(args, flag[2:].replace("-", "_"))
        finite = not isinstance(value, float) or math.isfinite(value)  # isfinite(int) overflows on 10**400
        if value is None or (low <= value <= high and finite):
            continue
        allowed = f"at least {low}" if high == math.inf else f"between {low} and {high}"
        raise ValueError(f"{flag} must be {allowed}{f' ({hint})' if hint else ''}, got {value}")
    for flag in ("--fps", "--max-duration"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a positive number, got {value}")


def _check_combinations(args: argparse.Namespace) -> None:
    if not args.out.parent.is_dir():
        raise ValueError(f"--out: the folder {args.out.parent} does not exist")
    if args.first_frame is not None and args.conditions != "chained":
        raise ValueError(f"--first-frame needs --conditions chained ({args.conditions} has no first-frame condition)")
    if args.mode == "window" and args.first_frame is not None:
        raise ValueError("--first-frame needs --mode chain (the sliding window has no first-frame condition)")
    if args.context_overlap >= args.context_size:
        raise ValueError(
            f"--context-overlap ({args.context_overlap}) must be smaller than --context-size ({args.context_size})"
        )
    if args.extract_poses and args.pose_video is None:
        raise ValueError("--extract-poses detects the poses of a --pose-video: give one, or drop the flag")
    if args.fps is not None and args.pose_video is not None:
        raise ValueError("--fps is for --pose-keypoints that do not state a rate: a --pose-video has its own")
    if (args.canvas_width is None) != (args.canvas_height is None):
        raise ValueError("give both --canvas-width and --canvas-height, or neither")
    if args.canvas_width is not None and args.pose_keypoints is None:
        raise ValueError("--canvas-width/--canvas-height describe --pose-keypoints: a --pose-video has its own size")


def _check_references(args: argparse.Namespace) -> None:
    count = len(args.references)
    if args.references_keypoints and len(args.references_keypoints) != count:
        raise ValueError(f"--reference-keypoints: got {len(args.references_keypoints)} for {count} --reference; "
                         "give one per reference, in the same order, or none")
    if count > 1 and args.first_frame is not None:
        raise ValueError("--first-frame is one person's first frame: render each --reference on its own to use it")
    output_paths(args)


def output_paths(args: argparse.Namespace) -> list[Path]:
    """One MP4 per --reference: --out itself (one reference), in the --out folder, or from its pattern."""
    references, text = args.references, str(args.out)
    if "{" in text:
        try:
            outs = [Path(text.format(index=index, stem=ref.stem)) for index, ref in enumerate(references)]
        except (KeyError, IndexError, ValueError, AttributeError):
            raise ValueError(f"--out {text}: a pattern may name only {{index}} and {{stem}}") from None
    elif args.out.is_dir():
        stems = [ref.stem for ref in references]
        outs = [args.out / (f"{stem}.mp4" if stems.count(stem) == 1 else f"{stem}-{index}.mp4")
                for index, stem in enumerate(stems)]
    elif len(references) == 1:
        return [args.out]
    else:
        raise ValueError(f"--out {text}: with {len(references)} --reference give an existing folder (one "
                         "<reference name>.mp4 each) or a pattern with {index} or {stem}")
    if len(set(outs)) != len(outs):
        raise ValueError(f"--out {text}: the references would overwrite each other's video; add {{index}}")
    for out in outs:
        if not out.parent.is_dir():
            raise ValueError(f"--out: the folder {out.parent} does not exist")
    return outs


def _check_frame_size(args: argparse.Namespace) -> None:
    """Both sides must divide into the VAE's 1/8 latent and then into the UNet's downsamplings."""
    name = "tiny" if args.model == "tiny" else "released"
    multiple = size_multiple(args)
    given = [side for side in (args.height, args.width) if side is not None]
    if all(side > 0 and side % multiple == 0 for side in given):
        return
    sides = {flag: side for flag, side in (("--height", args.height), ("--width", args.width)) if side is not None}
    asked = " ".join(f"{flag} {side}" for flag, side in sides.items())
    fits = " ".join(f"{flag} {max(1, math.ceil(side / multiple)) * multiple}" for flag, side in sides.items())
    raise ValueError(f"{asked}: the {name} model needs multiples of {multiple} (e.g. {fits})")


def size_multiple(args: argparse.Namespace) -> int:
    """What both frame sides must be a multiple of, for the model the flags ask for."""
    from model.architecture import Architecture

    return (Architecture.tiny() if args.model == "tiny" else Architecture.released()).size_multiple


def _check_device(args: argparse.Namespace) -> None:
    if args.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch finds no CUDA device here; use --device cpu")


def _check_checkpoint_dir(args: argparse.Namespace) -> None:
    """The released files are found by name, without reading them."""
    if args.checkpoint_dir is None:
        return
    from model.checkpoints import CheckpointError, ModelFiles

    try:
        ModelFiles.discover(args.checkpoint_dir)
    except CheckpointError as exc:
        raise ValueError(f"--checkpoint-dir: {exc}") from None


def render_options(args: argparse.Namespace, frame_size: tuple[int, int]) -> RenderOptions:
    """The options for a render at `frame_size` (height, width: the flags', or the reference's default)."""
    conditions = CONDITION_SETS[args.conditions]
    noise_prior_t = conditions.noise_prior_t if args.noise_prior_t is None else args.noise_prior_t
    sampling = SamplingOptions(
        seed=args.seed, steps=args.steps, guidance_scale=args.guidance, noise_prior_t=noise_prior_t
    )
    return RenderOptions(
        height=frame_size[0],
        width=frame_size[1],
        sampling=sampling,
        mode=args.mode,
        segment_frames=args.segment_frames,
        context_size=args.context_size,
        context_overlap=args.context_overlap,
        context_batch_size=args.context_batch_size,
        crf=args.crf,
        conditions=args.conditions,
    )


def load_renderer(args: argparse.Namespace) -> SegmentRenderer:
    """The UniAnimate pipeline the arguments ask for (loaded once; it renders every segment)."""
    import torch

    from model.pipeline import DTYPES as TORCH_DTYPES
    from model.pipeline import UniAnimatePipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = TORCH_DTYPES[args.dtype or ("fp16" if device == "cuda" else "fp32")]
    settings = {"device": device, "dtype": dtype, "cpu_offload": args.cpu_offload}
    if args.model == "tiny":
        return UniAnimatePipeline.tiny(**settings)
    from model.checkpoints import CheckpointError

    try:
        return UniAnimatePipeline.from_checkpoint_dir(args.checkpoint_dir, **settings)
    except CheckpointError as exc:  # a file to replace, reported like bad input
        raise ValueError(str(exc)) from None


class SharedMotion:
    """What the renders of every --reference share, worked out on first use: the motion file read
    once, its role decided once, and the pose detector, which detects a driving video's poses once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args

    @functools.cached_property
    def pose_keypoints(self) -> bytes | None:
        return None if self._args.pose_keypoints is None else self._args.pose_keypoints.read_bytes()

    @functools.cached_property
    def videos(self) -> dict[str, Path]:
        return {} if self._args.pose_video is None else {_pose_video_role(self._args): self._args.pose_video}

    @functools.cached_property
    def extractor(self) -> Any:
        extractor = _extractor(self._args)
        return None if extractor is None else DetectOnce(extractor)


class DetectOnce:
    """A DWPose extractor that remembers the poses of each video it read (each photo is still its own)."""

    def __init__(self, extractor: Any) -> None:
        self._extractor = extractor
        self._videos: dict[tuple[str, int], Any] = {}

    def extract_image(self, image: np.ndarray) -> Any:
        return self._extractor.extract_image(image)

    def extract_video(self, path: Path, frame_interval: int) -> Any:
        key = (str(path), frame_interval)
        if key not in self._videos:
            self._videos[key] = self._extractor.extract_video(path, frame_interval)
        return self._videos[key]


def renders(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The arguments of each render, one per --reference: its photo (`reference`), its keypoints
    (`reference_keypoints`), its output (`out`) and the motion they all share (`shared`)."""
    keypoints = args.references_keypoints or [None] * len(args.references)
    shared = SharedMotion(args)
    return [argparse.Namespace(**{**vars(args), "reference": reference, "reference_keypoints": points, "out": out,
                                  "shared": shared})
            for reference, points, out in zip(args.references, keypoints, output_paths(args), strict=True)]


def load_motion(args: argparse.Namespace) -> Motion:
    """One render's motion (`args` from `renders`): `--fps` is the rate of keypoints that do not state
    one; the output plays at the source rate over the frame interval."""
    return prepare_motion(
        reference_image=args.reference,
        reference_keypoints=args.reference_keypoints,
        pose_keypoints=args.shared.pose_keypoints,
        **args.shared.videos,
        height=args.height,
        width=args.width,
        size_multiple=size_multiple(args),
        pose_canvas=None if args.canvas_width is None else (args.canvas_width, args.canvas_height),
        frame_interval=args.frame_interval,
        source_fps=args.fps,
        max_duration_s=args.max_duration,
        align=args.align,
        extractor=args.shared.extractor,
    )


def _pose_video_role(args: argparse.Namespace) -> str:
    """A skeleton video is used as drawn; used that way, camera footage would animate noise."""
    if args.extract_poses:
        return "driving_video"
    if not is_skeleton_video(args.pose_video):
        raise ValueError(
            f"--pose-video {args.pose_video} looks like camera footage, not drawn skeletons: add "
            "--extract-poses to detect its poses with DWPose (weights in --dwpose-dir or "
            "UNIANIMATE_DWPOSE_DIR), or give a skeleton video or --pose-keypoints"
        )
    return "skeleton_video"


def _extractor(args: argparse.Namespace):
    """The DWPose extractor, only when poses must be detected (reference photo or raw driving video)."""
    if args.references_keypoints and not args.extract_poses:
        return None
    from model.pose.extract import DWPoseExtractor, DWPoseNotConfigured

    try:
        return DWPoseExtractor(args.dwpose_dir, device=args.device or "auto")
    except DWPoseNotConfigured as exc:  # a setup problem the user fixes, reported like bad input
        raise ValueError(str(exc)) from None


def load_first_frame(path: Path, height: int, width: int) -> np.ndarray:
    """The image the video must start from, at the output size (PIL bilinear, like the original)."""
    image = load_image(path, what=f"--first-frame {path}")
    return resize_like_original(Image.fromarray(image), height, width)


class ProgressBar:
    """A tqdm bar over the whole job, labelled with segment, step and frames."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=1000, disable=not enabled, bar_format="{l_bar}{bar}| {postfix}")

    def __call__(self, progress: Progress) -> None:
        self._bar.set_description(
            f"segment {progress.segment}/{progress.segments} step {progress.step}/{progress.steps}"
        )
        eta = "?" if progress.eta_s is None else f"{progress.eta_s:.0f}s"
        self._bar.set_postfix_str(f"frames {progress.frames_done}/{progress.frames_total} eta {eta}")
        self._bar.update(round(1000 * progress.fraction) - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        each = renders(args)
    except (ValueError, OSError) as exc:  # bad input: say what to fix, no traceback
        return _refuse(exc, args)
    prepared = []
    for one in each:  # every reference is checked before the model loads
        try:
            motion = load_motion(one)
            options = render_options(one, motion.frame_size)
            first_frame = None if one.first_frame is None else load_first_frame(one.first_frame, *motion.frame_size)
        except (ValueError, OSError) as exc:
            return _refuse(exc, one)
        prepared.append((one, motion, options, first_frame))
    try:
        renderer = load_renderer(args)
    except (ValueError, OSError) as exc:
        return _refuse(exc, args)
    if renderer.untrained:
        print(
            f"unianimate render: using {renderer.label}: the video will not look like the person",
            file=sys.stderr,
        )
    for one, motion, options, first_frame in prepared:
        code = _render_one(renderer, one, motion, options, first_frame)
        if code:
            return code
    return 0


def _render_one(renderer: SegmentRenderer, args: argparse.Namespace, motion: Motion, options: RenderOptions,
                first_frame: np.ndarray | None) -> int:
    try:
        with closing(ProgressBar(enabled=not args.quiet)) as bar:  # closed before any message below
            result = render_video(
                renderer,
                motion.reference_image,
                motion.ref_pose,
                motion.poses,
                args.out,
                fps=motion.fps,
                options=options,
                first_frame=first_frame,
                audio_source=motion.audio_source,
                on_progress=bar,
            )
    except (KeyboardInterrupt, RenderCancelled):
        print(f"unianimate render: canceled, {args.out} not written", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # e.g. a pose video that stops decoding half way
        return _refuse(exc, args)
    print(f"{result.path}: {result.frames} frames at {float(result.fps):g} fps, {result.duration_s:.3f} s")
    return 0


def _refuse(exc: Exception, args: argparse.Namespace) -> int:
    # one render's arguments name its reference keypoints; the command's, the first (or none)
    keypoints = getattr(args, "reference_keypoints", None) or (args.references_keypoints or [None])[0]
    files = {"pose_keypoints": args.pose_keypoints, "reference_keypoints": keypoints}
    print(f"unianimate render: error: {in_cli_words(exc, files)}", file=sys.stderr)
    return 2
