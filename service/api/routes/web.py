"""The web page (GET /, its files under /web/) and the example inputs it offers (GET /examples/...).

The page is plain HTML, CSS and JavaScript shipped in `service/web/` (no build step); it calls the
same endpoints as any client, with the API key the user typed. Neither the page nor the examples
need a key: they hold nothing of anyone's.
"""
from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.api.problems import Problem, problem_responses
from service.api.state import AppState, State

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
# one plain file name: no separators, no leading dot, so a name can never leave the folder
_EXAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                ".json": "application/json", ".mp4": "video/mp4", ".webm": "video/webm"}

router = APIRouter(tags=["web page"])


@router.get("/", response_class=FileResponse, responses={200: {"content": {"text/html": {}}}})
async def web_page() -> FileResponse:
    """The web page: upload, preflight, render, watch and download (docs/api.md, "The web page")."""
    # no-cache: a browser revalidates (ETag), so a new release's page is never mixed with old scripts
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/examples", responses=problem_responses(404))
def example_list(state: State) -> dict[str, list[str]]:
    """The names of the bundled example inputs (what GET /examples/{name} serves)."""
    folder = _examples_dir(state)
    return {"examples": sorted(path.name for path in folder.iterdir()
                               if path.is_file() and _EXAMPLE_NAME.match(path.name) and path.suffix in _MEDIA_TYPES)}


@router.get("/examples/{name}", response_class=FileResponse,
            responses={200: {"content": {t: {} for t in sorted(set(_MEDIA_TYPES.values()))}}, **problem_responses(404)})
def example_file(name: str, state: State) -> FileResponse:
    """One bundled example input (a photo, its keypoints, a motion)."""
    folder = _examples_dir(state)
    path = folder / name
    if not _EXAMPLE_NAME.match(name) or path.suffix not in _MEDIA_TYPES or not path.is_file() \
            or path.resolve().parent != folder.resolve():
        raise Problem(404, "not-found", f"no example {name!r}; GET /examples lists them")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers={"Cache-Control": "max-age=3600"})


def _examples_dir(state: AppState) -> Path:
    folder = state.settings.examples_dir
    if folder is None or not folder.is_dir():
        raise Problem(404, "not-found", "this server has no example inputs (UNIANIMATE_EXAMPLES_DIR)")
    return folder
