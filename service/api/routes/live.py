"""GET /jobs/{id}/live.m3u8 and its fragments: progressive playback while a job renders (issue 14).

The worker publishes each finished segment as an fMP4 fragment and rewrites `jobs/{id}/live.m3u8`
(worker/live_playlist.py). The stored playlist names its files relative to itself (`live/init.mp4`,
`live/0003.m4s`), which object storage cannot serve to a client holding only an API key. This route
answers the stored playlist with every such URI replaced by a presigned storage URL (S3), or by this
API's `GET /jobs/{id}/live/{name}` (local storage, which serves the file like GET /jobs/{id}/video).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from service.api.auth import Owner
from service.api.problems import Problem, problem_responses
from service.api.routes.jobs import load_job
from service.api.state import AppState, State
from service.storage.objects import ObjectNotFound, live_key

router = APIRouter(tags=["jobs"])

PLAYLIST_MEDIA_TYPE = "application/vnd.apple.mpegurl"
# The playlist grows until the job ends: a cached copy would hide new segments.
_NO_STORE = {"Cache-Control": "no-store"}
_FILE = re.compile(r"^(init\.mp4|\d{4}\.m4s)$")  # the names worker/live_playlist.py writes
_MAP_URI = re.compile(r'^(#EXT-X-MAP:.*URI=")([^"]*)(".*)$')
_MEDIA_TYPES = {"mp4": "video/mp4", "m4s": "video/iso.segment"}


@router.get("/jobs/{job_id}/live.m3u8", name="job_live_playlist",
            responses={200: {"content": {PLAYLIST_MEDIA_TYPE: {}},
                             "description": "HLS media playlist (EVENT) of the finished segments"},
                       **problem_responses(401, 404, 503)})
def job_live_playlist(job_id: str, request: Request, owner: Owner, state: State) -> Response:
    """The finished segments as an HLS playlist (fMP4) whose URIs are presigned storage URLs; it grows
    while the job runs and ends with `#EXT-X-ENDLIST` once the video is complete."""
    job = load_job(job_id, owner, state)
    try:
        text = state.storage.get_bytes(live_key(job_id)).decode()
    except ObjectNotFound:
        raise Problem(404, "not-found", f"job {job_id} is {job.status.value} and has no finished segment yet; "
                                        "live.m3u8 exists once its first segment is finished (chain mode "
                                        "only: a window-mode job publishes none)") from None
    body = rewrite_playlist(text, lambda name: fragment_url(request, state, job_id, name))
    return Response(body, media_type=PLAYLIST_MEDIA_TYPE, headers=_NO_STORE)


@router.get("/jobs/{job_id}/live/{name}", name="job_live_fragment", status_code=302,
            responses={200: {"content": {"video/mp4": {}, "video/iso.segment": {}},
                             "description": "the file (local storage)"},
                       302: {"description": "redirect to a presigned URL"},
                       **problem_responses(401, 404, 503)})
def job_live_fragment(job_id: str, name: str, owner: Owner, state: State) -> Response:
    """One file of the live playlist (`init.mp4` or `NNNN.m4s`): a redirect to object storage, or the
    file itself when storage is a local directory."""
    load_job(job_id, owner, state)
    if not _FILE.match(name):
        raise Problem(404, "not-found", f"{name!r} is not a live playlist file (init.mp4 or NNNN.m4s)")
    key = live_key(job_id, name)
    url = state.storage.presigned_url(key, state.settings.presign_ttl_s)
    if url is not None:
        return RedirectResponse(url, status_code=302)
    path = state.storage.local_path(key)
    if path is None:
        raise Problem(404, "not-found", f"job {job_id} has not published {name}")
    return FileResponse(path, media_type=_MEDIA_TYPES[name.rpartition(".")[2]])


def fragment_url(request: Request, state: AppState, job_id: str, name: str) -> str:
    """Where a client fetches one playlist file: presigned (valid `presign_ttl_s`) or this API."""
    url = state.storage.presigned_url(live_key(job_id, name), state.settings.presign_ttl_s)
    return url if url is not None else str(request.url_for("job_live_fragment", job_id=job_id, name=name))


def rewrite_playlist(text: str, url: Callable[[str], str]) -> str:
    """The stored playlist with its init section (EXT-X-MAP URI) and every fragment URI, written as
    `live/{name}`, replaced by `url(name)`. Anything else stays as stored."""
    lines = []
    for line in text.splitlines():
        if match := _MAP_URI.match(line):
            line = match[1] + url(_file_name(match[2])) + match[3]
        elif line.strip() and not line.startswith("#"):
            line = url(_file_name(line.strip()))
        lines.append(line)
    return "\n".join(lines) + "\n"


def _file_name(uri: str) -> str:
    folder, _, name = uri.rpartition("/")
    if folder != "live" or not _FILE.match(name):
        raise ValueError(f"unexpected URI {uri!r} in a stored live playlist")
    return name
