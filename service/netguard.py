"""Outbound-URL guard: the service fetches input URLs and posts webhooks to URLs that users
choose, so every such request must be kept away from the service's own network (Redis, the
object store, cloud metadata endpoints, the pod network).

Two layers:

* `check_url` refuses a URL whose host resolves to any non-public address. The API calls it when
  a job is submitted, so a bad URL is a 4xx at once instead of a failed delivery later.
* `pinned_client` builds an httpx client whose transport re-runs the check on EVERY request (each
  redirect hop and each retry included) and then connects to the very address it checked. The
  check and the connection therefore cannot see two different DNS answers (DNS rebinding).

Hosts named in `allow_hosts` (exact ASCII host names or IP literals, e.g. a receiver on the same
private network) skip the address check and may use plain http.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import anyio.to_thread
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048


class BlockedURL(ValueError):
    """The URL may not be requested; the message says why and what to change."""


class UnresolvableURL(BlockedURL):
    """The host did not resolve. Unlike other refusals this may be temporary (DNS outage), so
    webhook delivery retries it while the API rejects it at submission."""


# IANA special-purpose ranges that are not globally reachable, named so a refusal says why.
# Spelled out instead of relying only on `ipaddress.is_global`, whose tables differ between
# Python releases.
_CLOUD_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries, with the form's name, if any."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible); not :: or ::1
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    ip = ipaddress.ip_address(str(ip).split("%")[0])  # drop an IPv6 zone id
    if ip in _CLOUD_METADATA:
        return "cloud metadata endpoint"
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)):
        form, v4 = embedded
        if reason := blocked_reason(v4):
            return f"{form} form of a {reason} address ({v4})"
        if form != "6to4":  # mapped/compatible/NAT64 packets go to the embedded IPv4 host, judged above
            return None
    for network, reason in _BLOCKED_NETWORKS:
        if ip in network:
            return reason
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the guard, with the addresses its host resolved to at check time."""

    url: httpx.URL
    host: str  # ASCII (punycode) host name or IP literal, lower case
    port: int
    addresses: tuple[IPAddress, ...]


def _normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def normalize_allow_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """Lower-case, drop trailing dots and IPv6 brackets, so `Hooks.Example.com.` matches."""
    return frozenset(_normalize_host(h) for h in hosts if h.strip())


def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableURL(f"host {host!r} does not resolve ({exc}); check the URL's host name") from exc
    addresses = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    if not addresses:
        raise UnresolvableURL(f"host {host!r} resolved to no addresses; check the URL's host name")
    return tuple(addresses)


def _parse(url: str | httpx.URL) -> httpx.URL:
    # httpx parses it here because httpx sends it: a second parser could read a different host.
    if len(str(url)) > MAX_URL_LENGTH:
        raise BlockedURL(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BlockedURL(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in {"http", "https"}:
        raise BlockedURL(f"URL scheme must be https (got {parsed.scheme or 'none'!r})")
    if not parsed.host:
        raise BlockedURL("URL has no host; give an absolute https:// URL")
    if parsed.userinfo:
        raise BlockedURL("URL must not contain a user name or password; use the webhook signature instead")
    return parsed


def resolve_url(url: str | httpx.URL, allow_hosts: frozenset[str] = frozenset()) -> CheckedURL:
    """Check `url` like `check_url` and return where a connection for it may go."""
    parsed = _parse(url)
    host = _normalize_host(parsed.raw_host.decode("ascii"))
    allowed = host in normalize_allow_hosts(allow_hosts)
    if parsed.scheme != "https" and not allowed:
        raise BlockedURL(f"URL must use https (got http://{host}); plain http is only for allowed hosts")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not allowed:
        for address in addresses:
            if reason := blocked_reason(address):
                raise BlockedURL(
                    f"host {host!r} resolves to {address}, a {reason} address; use a public host "
                    "or add it to UNIANIMATE_WEBHOOK_ALLOW_HOSTS"
                )
    return CheckedURL(url=parsed, host=host, port=port, addresses=addresses)


def check_url(url: str, allow_hosts: frozenset[str] = frozenset()) -> None:
    """Raise BlockedURL unless `url` is http(s) to a host that resolves only to public addresses
    (https required), or to a host in `allow_hosts` (any address, http allowed)."""
    resolve_url(url, allow_hosts)


def _pin(request: httpx.Request, target: CheckedURL) -> httpx.Request:
    """A copy of `request` aimed at the checked address; Host header and TLS name stay the host's,
    so virtual hosting and certificate verification are unchanged."""
    address = target.addresses[0]
    extensions = dict(request.extensions)
    if request.url.scheme == "https":
        extensions["sni_hostname"] = target.host
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=request.headers,  # already carries Host: <original host>
        stream=request.stream,
        extensions=extensions,
    )


# The connection pool is keyed by the URL's origin, which after pinning is the IP address: a kept-alive
# TLS connection opened (and certificate-checked) for one host name could be reused for another name on
# the same address. Deliveries are infrequent, so every request gets a fresh, freshly checked connection.
_NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


class PinnedTransport(httpx.BaseTransport):
    """Checks every request's URL, then sends it to the address that passed the check."""

    def __init__(self, allow_hosts: frozenset[str] = frozenset(), inner: httpx.BaseTransport | None = None):
        self._allow_hosts = normalize_allow_hosts(allow_hosts)
        self._inner = inner or httpx.HTTPTransport(limits=_NO_KEEPALIVE)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(_pin(request, resolve_url(request.url, self._allow_hosts)))

    def close(self) -> None:
        self._inner.close()


class AsyncPinnedTransport(httpx.AsyncBaseTransport):
    """The asyncio/trio twin of PinnedTransport; the blocking DNS lookup runs in a thread."""

    def __init__(
        self, allow_hosts: frozenset[str] = frozenset(), inner: httpx.AsyncBaseTransport | None = None
    ):
        self._allow_hosts = normalize_allow_hosts(allow_hosts)
        self._inner = inner or httpx.AsyncHTTPTransport(limits=_NO_KEEPALIVE)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = await anyio.to_thread.run_sync(resolve_url, request.url, self._allow_hosts)
        return await self._inner.handle_async_request(_pin(request, target))

    async def aclose(self) -> None:
        await self._inner.aclose()


def pinned_client(
    allow_hosts: frozenset[str] = frozenset(),
    *,
    timeout: float = 10.0,
    follow_redirects: bool = False,
    max_redirects: int = 5,
) -> httpx.Client:
    """An httpx.Client that only reaches URLs passing the guard, hop by hop when following
    redirects. trust_env is off: a proxy from the environment would bypass the pinning."""
    return httpx.Client(
        transport=PinnedTransport(allow_hosts),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
    )


def pinned_async_client(
    allow_hosts: frozenset[str] = frozenset(),
    *,
    timeout: float = 10.0,
    follow_redirects: bool = False,
    max_redirects: int = 5,
) -> httpx.AsyncClient:
    """The async twin of `pinned_client`."""
    return httpx.AsyncClient(
        transport=AsyncPinnedTransport(allow_hosts),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
    )
