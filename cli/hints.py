"""A missing canvas or frame rate, said in the command line's words: which file, and which flag fixes it.

The model raises MissingCanvas / MissingFps tagged with the input's role; the API says the same with
its request fields (service/api/routes/animate.py).
"""
from __future__ import annotations

from pathlib import Path

from model.pose.keypoints import MissingCanvas, MissingFps

# role -> the flags that give that input's canvas
CANVAS_FLAGS = {
    "pose_keypoints": "--canvas-width and --canvas-height (the pixel size of the video the poses came from)",
    "reference_keypoints": "--reference-canvas-width and --reference-canvas-height (the pixel size of the "
                           "photo they describe)",
}


def in_cli_words(exc: Exception, files: dict[str, Path | None]) -> str:
    """The message for `exc`; MissingCanvas / MissingFps name the file (`files`: role -> path) and the flag."""
    if not isinstance(exc, MissingCanvas | MissingFps) or exc.role not in CANVAS_FLAGS:
        return str(exc)
    label = "reference " if exc.role == "reference_keypoints" else ""
    where = f"{label}{files.get(exc.role) or exc.role}: {exc.detail}"
    if isinstance(exc, MissingFps):
        return f'{where}: give --fps (e.g. --fps 30), or add "fps" to the file'
    return f"{where}: give {CANVAS_FLAGS[exc.role]}, or add canvas_width and canvas_height to the file"
