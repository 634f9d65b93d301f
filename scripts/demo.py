"""Render the demo through the REST API: the example person (examples/) dances for 4 s.

    python scripts/demo.py --api http://127.0.0.1:8000 --out .run/demo.mp4

Submits examples/person.png, its keypoints and examples/dance_openpose.json (OpenPose pixels without
a canvas size or fps, as OpenPose writes them; the rate goes in `params.fps`) as multipart, follows
the job's Server-Sent Events, downloads the MP4 and prints its path and frame count. Only the
height is sent: the width follows the photo's aspect ratio. Exit status 0 only if the job succeeded
and the file has the frames and the aspect ratio it should. With the tiny model the video is
noise-like (it is untrained).

`demo_keypoints`, `demo_reference_keypoints` and `demo_reference_image` are the same person and a wave
in memory (canvas and fps stated), for the tests.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a file (python scripts/demo.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.frame_size import ASPECT_TOLERANCE  # torch-free
from scripts.make_examples import (
    DANCE_HEIGHT,
    DANCE_WIDTH,
    EXAMPLES,
    openpose_frame,
    person_image,
    png_bytes,
    wave_pose,
)


def demo_keypoints(seconds: float = 4.0, fps: int = 15) -> dict:
    """An OpenPose keypoint document of the person waving (pixels of 512x768, canvas and fps given)."""
    frames = [openpose_frame(wave_pose(i / fps)) for i in range(max(1, round(seconds * fps)))]
    return {"fps": fps, "canvas_width": DANCE_WIDTH, "canvas_height": DANCE_HEIGHT, "frames": frames}


def demo_reference_keypoints() -> dict:
    """The reference picture's own pose: the person at rest."""
    return {"canvas_width": DANCE_WIDTH, "canvas_height": DANCE_HEIGHT, "frames": demo_keypoints(0.0, 1)["frames"][:1]}


def demo_reference_image(width: int = DANCE_WIDTH, height: int = DANCE_HEIGHT) -> bytes:
    """A PNG of the example person standing, drawn at `width` x `height`."""
    return png_bytes(person_image(width, height))


# ---------------------------------------------------------------- the client


def submit(client: httpx.Client, examples: Path, params: dict) -> str:
    files = {
        "reference_image": ("person.png", (examples / "person.png").read_bytes(), "image/png"),
        "reference_keypoints": ("person_keypoints.json", (examples / "person_keypoints.json").read_bytes(),
                                "application/json"),
        "pose_keypoints": ("dance_openpose.json", (examples / "dance_openpose.json").read_bytes(), "application/json"),
    }
    response = client.post("/animate", files=files, data={"params": json.dumps(params)})
    if response.status_code != 202:
        raise SystemExit(f"POST /animate answered {response.status_code}: {response.text}")
    return response.json()["job_id"]


def follow(client: httpx.Client, job_id: str, timeout_s: float) -> dict:
    """Print progress from the job's event stream until it ends; return the final job record.

    A dropped stream is reopened with Last-Event-ID, as any SSE client does, so nothing is missed."""
    deadline = time.monotonic() + timeout_s
    last_id = None
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with client.stream("GET", f"/jobs/{job_id}/events", headers=headers,
                               timeout=httpx.Timeout(30.0, read=None)) as stream:
                event = None
                for line in stream.iter_lines():
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and show(event, json.loads(line[6:])):
                        return client.get(f"/jobs/{job_id}").raise_for_status().json()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish within {timeout_s:.0f} s")


def show(event: str | None, data: dict) -> bool:
    """Print one event; True when the job reached its final state."""
    tty = sys.stdout.isatty()  # a terminal gets one updating line, a log one line per report
    if event == "progress":
        line = (f"  segment {data['segment'] + 1}/{data['segments_total']} step {data['step']}/{data['steps_total']} "
                f"frames {data['frames_done']}/{data['frames_total']} {100 * data['fraction']:5.1f}%")
        print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    elif event == "status":
        print(("\n" if tty else "") + f"  status: {data['status']}", flush=True)
        return data["status"] in ("succeeded", "failed", "canceled")
    return False


def download(client: httpx.Client, job_id: str, out: Path) -> None:
    response = client.get(f"/jobs/{job_id}/video", follow_redirects=True, timeout=120)
    response.raise_for_status()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(response.content)


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size > 0)


def expected_frames(examples: Path, fps: float, max_duration_s: float | None) -> int:
    """The dance's frame count at `fps` (its own rate), cut at `max_duration_s`."""
    frames = len(json.loads((examples / "dance_openpose.json").read_bytes()))
    return frames if max_duration_s is None else max(1, min(frames, math.floor(max_duration_s * fps)))


def same_aspect(width: int, height: int, photo: Path) -> bool:
    """Whether a width x height video has the photo's shape (within the model's size rounding)."""
    from PIL import Image

    with Image.open(photo) as image:
        photo_width, photo_height = image.size
    return abs(math.log((height / width) / (photo_height / photo_width))) <= ASPECT_TOLERANCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default=os.environ.get("UNIANIMATE_API", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("UNIANIMATE_DEMO_API_KEY"))
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="the folder with the example inputs")
    parser.add_argument("--out", type=Path, default=Path(".run/demo.mp4"))
    parser.add_argument("--fps", type=float, default=15, help="the dance's frame rate (its file states none)")
    parser.add_argument("--max-duration", type=float, help="cut the video at this many seconds")
    parser.add_argument("--height", type=int, default=192, help="tiny model: keep it small on a CPU; the width "
                        "follows the photo's aspect ratio (128 for the 256x384 example)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--segment-frames", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    params = {"height": args.height, "steps": args.steps, "seed": 0, "fps": args.fps,
              "segment_frames": args.segment_frames}
    if args.max_duration is not None:
        params["max_duration_s"] = args.max_duration
    with httpx.Client(base_url=args.api, headers=headers, timeout=60) as client:
        job_id = submit(client, args.examples, params)
        print(f"job {job_id}: {args.examples / 'dance_openpose.json'} at {args.fps:g} fps, height {args.height}, "
              f"{args.steps} steps")
        job = follow(client, job_id, args.timeout)
        if job["status"] != "succeeded":
            print(f"job {job_id} {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        download(client, job_id, args.out)
    result, model = job["result"], job.get("model") or {}
    frames, expected = count_frames(args.out), expected_frames(args.examples, args.fps, args.max_duration)
    print(f"{args.out}: {frames} frames at {result['fps']:g} fps, {result['duration_s']:.2f} s, "
          f"{result['width']}x{result['height']}, sha256 {result['sha256'][:16]}..., model: {model.get('name')}"
          f"{' (untrained)' if model.get('untrained') else ''}")
    if not same_aspect(result["width"], result["height"], args.examples / "person.png"):
        print(f"the video is {result['width']}x{result['height']}: not the reference photo's aspect ratio",
              file=sys.stderr)
        return 1
    return 0 if frames == result["frames"] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
