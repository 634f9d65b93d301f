"""Download the URL inputs of a JSON POST /animate into temp files, safely.

The client from service.netguard checks every hop (the URL and each redirect) after DNS
resolution and connects to the very address it checked, so private, loopback, link-local and
metadata addresses stay out of reach unless the host is in `allow_hosts`; https is required
except for allowed hosts. Bodies are counted while they stream; one over the limit is abandoned.
`timeout_s` bounds the whole download of one URL, not each read: a server that sends a byte
every few seconds would otherwise hold the request open for as long as it liked.
"""
from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from service.netguard import BlockedURL, pinned_async_client

MAX_REDIRECTS = 5


class FetchError(ValueError):
    """The URL could not be used; the message says why (for the client)."""


async def fetch_to_file(url: str, dest: Path, *, max_bytes: int, timeout_s: float,
                        allow_hosts: frozenset[str]) -> None:
    """Download `url` into `dest` within `timeout_s` in all; FetchError says why not."""
    try:
        with anyio.fail_after(timeout_s):
            await _fetch(url, dest, max_bytes, timeout_s, allow_hosts)
    except TimeoutError as exc:
        raise FetchError(f"{url} did not finish downloading within {timeout_s:g} s; serve it faster, "
                         "or upload the file as multipart instead") from exc


async def _fetch(url: str, dest: Path, max_bytes: int, timeout_s: float, allow_hosts: frozenset[str]) -> None:
    client = pinned_async_client(allow_hosts, timeout=timeout_s, follow_redirects=True,
                                 max_redirects=MAX_REDIRECTS)
    try:
        async with client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(f"{url} answered HTTP {response.status_code}")
            await _save(response, dest, max_bytes, url)
    except BlockedURL as exc:
        raise FetchError(f"{url} is not allowed: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects") from exc
    except httpx.InvalidURL as exc:  # not an HTTPError: raised while building the request
        raise FetchError(f"{url!r} is not a valid URL ({exc})") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"could not download {url}: {type(exc).__name__}") from exc


async def _save(response: httpx.Response, dest: Path, max_bytes: int, url: str) -> None:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{url} is {declared} bytes; the limit is {max_bytes}")
    received = 0
    async with await anyio.open_file(dest, "wb") as out:
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > max_bytes:
                raise FetchError(f"{url} is larger than the limit of {max_bytes} bytes")
            await out.write(chunk)
