"""A webhook receiver on 127.0.0.1 for tests: answers with scripted status codes and keeps what it got."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answers to the first requests, in order; 200 after them
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    on_request: Callable[[], None] | None = None  # run while a request is held, before it is answered

    def wait_for(self, count: int, timeout_s: float) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)
            return list(self.requests)


@contextlib.contextmanager
def webhook_receiver(statuses: list[int] | None = None, port: int = 0) -> Iterator[Receiver]:
    """`port` 0 takes a free one; a fixed port lets a test bring a receiver back at the same URL."""
    receiver = Receiver("", list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.arrived:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.arrived.notify_all()
            if receiver.on_request is not None:
                receiver.on_request()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
