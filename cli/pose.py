"""`unianimate pose render|align|preview|extract`: the pose tools on the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from cli.hints import in_cli_words
from model.pose.keypoints import DRAW_HEIGHT, DRAW_WIDTH, MissingCanvas, PoseInputError, PoseSequence

KINDS = ("auto", "keypoints", "skeleton_video", "driving_video", "image")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from model.pose.extract import DWPoseNotConfigured

    try:
        return args.run(args)
    except (PoseInputError, DWPoseNotConfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unianimate pose", description="Pose tools for UniAnimate.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    render = commands.add_parser("render", help="draw the skeletons exactly as the model sees them")
    _motion_args(render)
    render.add_argument("--out", required=True, type=Path, help="a folder for PNG frames, or a .mp4 file")
    render.add_argument("--height", type=int, default=DRAW_HEIGHT)
    render.add_argument("--width", type=int, default=DRAW_WIDTH)
    render.add_argument("--reference", type=Path, help="align to this reference (keypoint JSON or photo) first")
    _reference_args(render)
    render.set_defaults(run=_render)

    align = commands.add_parser("align", help="fit the driving poses to the reference person")
    _motion_args(align)
    align.add_argument("--reference", type=Path, required=True, help="reference keypoint JSON or photo")
    _reference_args(align)
    align.add_argument("--out", required=True, type=Path, help="aligned keypoints (JSON, DWPose layout)")
    align.set_defaults(run=_align)

    preview = commands.add_parser("preview", help="preflight report and aligned-skeleton preview")
    _motion_args(preview)
    preview.add_argument("--reference", type=Path, help="reference keypoint JSON or photo")
    _reference_args(preview)
    preview.add_argument("--no-align", action="store_true", help="show the driving poses as they are")
    preview.add_argument("--strip", type=Path, help="write an image strip (PNG) here")
    preview.add_argument("--video", type=Path, help="write a preview video (MP4) here")
    preview.add_argument("--report", type=Path, help="write the report (JSON) here instead of stdout")
    preview.set_defaults(run=_preview)

    extract = commands.add_parser("extract", help="DWPose keypoints from a raw video or a photo")
    extract.add_argument("input", type=Path)
    extract.add_argument("--image", action="store_true", help="the input is a photo, not a video")
    extract.add_argument("--frame-interval", type=int, help="keep every n-th frame (default: down to <=15 fps)")
    extract.add_argument("--out", required=True, type=Path, help="keypoints JSON to write")
    _dwpose_args(extract)
    extract.set_defaults(run=_extract)
    return parser


def _motion_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="keypoint JSON, a skeleton video or a raw driving video")
    parser.add_argument("--kind", choices=KINDS, default="auto", help="what the input is (videos must say)")
    parser.add_argument("--fps", type=float, help="frame rate of keypoint JSON that does not state it")
    parser.add_argument("--frame-interval", type=int, help="keep every n-th frame (default: down to <=15 fps)")
    parser.add_argument("--canvas-width", type=int, help="pixel width of keypoint coordinates")
    parser.add_argument("--canvas-height", type=int, help="pixel height of keypoint coordinates")
    parser.add_argument("--coordinates", choices=("auto", "pixels", "normalized"), default="auto")
    parser.add_argument("--swap-red-blue", action="store_true", help="skeleton video drawn with red/blue swapped")
    parser.add_argument("--smooth", action="store_true", help="One-Euro filter the keypoints over time")
    parser.add_argument("--min-cutoff", type=float, default=1.0, help="One-Euro minimum cutoff (Hz)")
    parser.add_argument("--beta", type=float, default=0.0, help="One-Euro speed coefficient")
    _dwpose_args(parser)


def _reference_args(parser: argparse.ArgumentParser) -> None:
    # The reference often comes from another tool than the motion, so its units are given separately.
    parser.add_argument("--reference-canvas-width", type=int, help="pixel width of the reference keypoints")
    parser.add_argument("--reference-canvas-height", type=int, help="pixel height of the reference keypoints")
    parser.add_argument("--reference-coordinates", choices=("auto", "pixels", "normalized"), default="auto")
    parser.add_argument("--reference-image", type=Path,
                        help="the photo the reference keypoints describe: pixel keypoints take its size as "
                             "their canvas (as `render` does)")


def _dwpose_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dwpose-dir", type=Path, help="folder with yolox_l.onnx and dw-ll_ucoco_384.onnx")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


# ---- loading ----------------------------------------------------------------------------------


def _extractor(args):
    from model.pose.extract import DWPoseExtractor

    return DWPoseExtractor(args.dwpose_dir, device=args.device)


def _load_motion(args):
    from model.pose.inputs import load_pose_input
    from model.pose.sampling import smooth

    if args.kind == "driving_video":  # extraction is the slow part: show its progress
        motion = _extract_video(_extractor(args), args.input, args.frame_interval)
    else:
        # Poses aligned to a reference lose their own canvas: any one that covers them will do.
        aligned = getattr(args, "reference", None) is not None and not getattr(args, "no_align", False)
        try:
            motion = load_pose_input(
                args.input, args.kind, canvas_width=args.canvas_width, canvas_height=args.canvas_height,
                fps=args.fps, frame_interval=args.frame_interval, coordinates=args.coordinates,
                default_canvas="extent" if aligned else None, swap_red_blue=args.swap_red_blue,
            )
        except MissingCanvas as exc:
            exc.role = "pose_keypoints"
            raise PoseInputError(in_cli_words(exc, {"pose_keypoints": args.input})) from None
    if args.smooth:
        if not isinstance(motion, PoseSequence):
            raise PoseInputError("--smooth needs keypoints; a drawn skeleton video cannot be smoothed")
        motion = smooth(motion, min_cutoff=args.min_cutoff, beta=args.beta)
    return motion


def _load_reference(args, path: Path | None) -> PoseSequence | None:
    if path is None:
        return None
    from model.pose.inputs import detect_input_kind, load_reference_pose

    width, height = args.reference_canvas_width, args.reference_canvas_height
    if detect_input_kind(path) == "image":
        if width is not None or height is not None or args.reference_coordinates != "auto":
            raise PoseInputError(
                "--reference-canvas-width/--reference-canvas-height/--reference-coordinates describe reference "
                "keypoint JSON; a reference photo is measured in its own pixels: leave them out"
            )
        return load_reference_pose(path, "image", extractor=_extractor(args))
    if width is None and height is None and args.reference_image is not None:  # the keypoints' photo
        width, height = _image_size(args.reference_image)
    try:
        return load_reference_pose(
            path, "keypoints", canvas_width=width, canvas_height=height, coordinates=args.reference_coordinates
        )
    except MissingCanvas as exc:
        exc.role = "reference_keypoints"
        raise PoseInputError(in_cli_words(exc, {"reference_keypoints": path})) from None
    except PoseInputError as exc:  # say which file, and how to give its units here
        raise PoseInputError(
            f"reference {path}: {exc} (give its canvas and units with --reference-canvas-width, "
            "--reference-canvas-height and --reference-coordinates)"
        ) from None


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise PoseInputError(f"--reference-image {path}: not a readable image ({exc})") from None


def _extract_video(extractor, path: Path, frame_interval: int | None) -> PoseSequence:
    with tqdm(desc="extracting poses", unit="frame", disable=None) as bar:

        def on_frame(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return extractor.extract_video(path, frame_interval, on_frame=on_frame)


def _aligned(motion, reference: PoseSequence | None):
    if reference is None or not isinstance(motion, PoseSequence):
        return motion, None
    from model.pose.align import align_to_reference

    alignment = align_to_reference(motion, reference)
    for note in alignment.fallbacks:
        print(f"alignment fallback: {note}", file=sys.stderr)
    return alignment.sequence, alignment


# ---- commands ---------------------------------------------------------------------------------


def _render(args) -> int:
    from model.pose.render import iter_model_frames

    motion, _ = _aligned(_load_motion(args), _load_reference(args, args.reference))
    frames = tqdm(iter_model_frames(motion, args.height, args.width), total=motion.num_frames,
                  desc="drawing", unit="frame", disable=None)
    if args.out.suffix.lower() == ".mp4":
        from model.pose.video import write_video

        write_video(args.out, frames, _fps(motion))
    else:
        # PNG of the model's RGB = the bytes the original's cv2.imwrite wrote (losslessly here).
        args.out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(args.out / f"{i:04d}.png")
    print(f"wrote {motion.num_frames} frames to {args.out}")
    return 0


def _align(args) -> int:
    from model.pose.formats import to_pose_json

    motion = _load_motion(args)
    if not isinstance(motion, PoseSequence):
        raise PoseInputError("alignment needs keypoints; a drawn skeleton video cannot be aligned")
    aligned, _ = _aligned(motion, _load_reference(args, args.reference))
    args.out.write_text(json.dumps(to_pose_json(aligned)))
    print(f"wrote {aligned.num_frames} aligned frames to {args.out}")
    return 0


def _preview(args) -> int:
    from model.pose.preflight import preflight, preview_frames, preview_strip

    motion = _load_motion(args)
    reference = _load_reference(args, args.reference)
    shown, alignment = (motion, None) if args.no_align else _aligned(motion, reference)
    report = preflight(motion, reference, alignment)
    text = json.dumps(report.to_dict(), indent=2)
    if args.report:
        args.report.write_text(text)
    else:
        print(text)
    if args.strip:
        Image.fromarray(preview_strip(shown, reference)).save(args.strip)
    if args.video:
        from model.pose.video import write_video

        frames = tqdm(preview_frames(shown, reference), total=shown.num_frames, desc="preview", unit="frame",
                      disable=None)
        write_video(args.video, frames, _fps(shown))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _extract(args) -> int:
    from model.pose.formats import to_pose_json

    extractor = _extractor(args)
    if args.image:
        from model.pose.inputs import load_reference_pose

        sequence = load_reference_pose(args.input, "image", extractor=extractor)
    else:
        sequence = _extract_video(extractor, args.input, args.frame_interval)
    args.out.write_text(json.dumps(to_pose_json(sequence)))
    print(f"wrote {sequence.num_frames} frame(s) of keypoints to {args.out}")
    return 0


def _fps(motion) -> float:
    if motion.fps is None:
        raise PoseInputError("the keypoints have no fps: give --fps to write a video")
    return motion.fps


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

