"""The outbound-URL guard: literal addresses, a fake resolver (no network), and real local sockets."""
from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import anyio
import httpx
import pytest

from service import netguard
from service.netguard import (
    BlockedURL,
    PinnedTransport,
    UnresolvableURL,
    blocked_reason,
    check_url,
    pinned_async_client,
    pinned_client,
    resolve_url,
)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A fake resolver: tests fill host -> addresses; literal IPs still resolve to themselves;
    any other name fails like an unknown host."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in table:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in table[host]
            ]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(netguard.socket, "getaddrinfo", fake)
    return table


BLOCKED = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1",
    "169.254.169.254", "100.64.0.1", "100.100.100.200", "0.0.0.0", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1", "192.0.0.9",
    "::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "64:ff9b:1::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_reasons_name_the_problem() -> None:
    assert blocked_reason(ipaddress.ip_address("169.254.169.254")) == "cloud metadata endpoint"
    assert blocked_reason(ipaddress.ip_address("fd00:ec2::254")) == "cloud metadata endpoint"
    assert blocked_reason(ipaddress.ip_address("100.64.3.4")) == "carrier-grade NAT"
    assert "IPv4-mapped" in blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert "6to4" in blocked_reason(ipaddress.ip_address("2002:7f00:1::1"))


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "[::1]", "[::ffff:192.168.0.1]", "169.254.169.254"]
)
def test_literal_ip_urls_are_refused(address: str, dns) -> None:
    with pytest.raises(BlockedURL, match="resolves to"):
        check_url(f"https://{address}/hook")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme must be https"),
        ("file:///etc/passwd", "scheme must be https"),
        ("http://example.com/x", "must use https"),
        ("https:///nohost", "no host"),
        ("/relative/path", "scheme must be https"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com/" + "a" * 3000, "longer than"),
    ],
)
def test_malformed_or_insecure_urls_are_refused(url: str, message: str, dns) -> None:
    dns["example.com"] = ["93.184.216.34"]
    with pytest.raises(BlockedURL, match=message):
        check_url(url)


def test_public_host_passes(dns) -> None:
    dns["hooks.example.com"] = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    check_url("https://hooks.example.com/receive")
    target = resolve_url("https://Hooks.Example.com.:8443/receive")
    assert (target.host, target.port) == ("hooks.example.com", 8443)
    assert target.addresses[0] == ipaddress.ip_address("93.184.216.34")


def test_any_private_answer_blocks_the_host(dns) -> None:
    dns["mixed.example.com"] = ["93.184.216.34", "10.0.0.5"]
    with pytest.raises(BlockedURL, match="10.0.0.5, a private address"):
        check_url("https://mixed.example.com/")


def test_numeric_host_spellings_are_judged_by_what_they_resolve_to(dns) -> None:
    dns["2130706433"] = ["127.0.0.1"]  # what the C resolver makes of a decimal IPv4
    with pytest.raises(BlockedURL, match="loopback"):
        check_url("https://2130706433/")


def test_unresolvable_host_is_its_own_error(dns) -> None:
    with pytest.raises(UnresolvableURL, match="does not resolve"):
        check_url("https://nothing.invalid/")


def test_allow_hosts_permits_private_addresses_and_http(dns) -> None:
    dns["receiver.internal"] = ["10.0.0.7"]
    allow = frozenset({"Receiver.Internal", "127.0.0.1"})
    check_url("http://receiver.internal:8080/hook", allow)
    check_url("http://127.0.0.1:9000/hook", allow)
    with pytest.raises(BlockedURL):
        check_url("http://other.internal/hook", allow)  # not allowed: plain http refused first
    with pytest.raises(BlockedURL):
        check_url("https://10.0.0.7/hook", allow)  # the address is not the allowed name


def _recording_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    return httpx.MockTransport(handler)


def test_pinned_transport_connects_to_the_checked_address(dns) -> None:
    dns["hooks.example.com"] = ["93.184.216.34"]
    seen: list[httpx.Request] = []
    with httpx.Client(transport=PinnedTransport(inner=_recording_transport(seen))) as client:
        assert client.post("https://hooks.example.com/in?x=1", content=b"{}").status_code == 204
    (sent,) = seen
    assert sent.url.host == "93.184.216.34"
    assert sent.url.path == "/in" and sent.url.query == b"x=1"
    assert sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"  # certificate checked for the name


def test_pinned_transport_rechecks_each_request_against_rebinding(dns) -> None:
    dns["rebind.example.com"] = ["93.184.216.34"]
    seen: list[httpx.Request] = []
    with httpx.Client(transport=PinnedTransport(inner=_recording_transport(seen))) as client:
        client.get("https://rebind.example.com/")
        dns["rebind.example.com"] = ["127.0.0.1"]  # the attacker's DNS flips to loopback
        with pytest.raises(BlockedURL, match="loopback"):
            client.get("https://rebind.example.com/")
    assert len(seen) == 1  # the second request never left


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 whose /go redirects to the URL in the query string."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/go?"):
                self.send_response(302)
                self.send_header("Location", self.path.split("?", 1)[1])
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_redirect_hops_are_rechecked(redirecting_server: str) -> None:
    allow = frozenset({"127.0.0.1"})
    with pinned_client(allow, follow_redirects=True) as client:
        assert client.get(f"{redirecting_server}/go?/final").status_code == 200  # same allowed host
        with pytest.raises(BlockedURL, match="169.254.169.254"):
            client.get(f"{redirecting_server}/go?http://169.254.169.254/latest/meta-data/")


def test_allowed_local_host_needs_allow_list(redirecting_server: str) -> None:
    with pinned_client() as client, pytest.raises(BlockedURL, match="https"):
        client.get(f"{redirecting_server}/final")


def test_async_client_is_guarded_too(redirecting_server: str) -> None:
    async def main() -> None:
        async with pinned_async_client(frozenset({"127.0.0.1"}), follow_redirects=True) as client:
            assert (await client.get(f"{redirecting_server}/go?/final")).status_code == 200
            with pytest.raises(BlockedURL, match="private"):
                await client.get(f"{redirecting_server}/go?https://10.0.0.1/")

    anyio.run(main)


def _self_signed_cert(tmp_path, name: str) -> tuple[str, str]:
    """A throwaway certificate for `name` made with the openssl command (fast EC key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


@pytest.mark.parametrize(("served_name", "ok"), [("hooks.test", True), ("someone-else.test", False)])
def test_tls_certificate_is_checked_for_the_host_name_not_the_pinned_ip(
    tmp_path, dns, served_name: str, ok: bool
) -> None:
    cert, key = _self_signed_cert(tmp_path, served_name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dns["hooks.test"] = ["127.0.0.1"]
        client_ctx = ssl.create_default_context(cafile=cert)
        transport = PinnedTransport(frozenset({"hooks.test"}), inner=httpx.HTTPTransport(verify=client_ctx))
        with httpx.Client(transport=transport) as client:
            if ok:
                assert client.get(f"https://hooks.test:{server.server_port}/").status_code == 200
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    client.get(f"https://hooks.test:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
