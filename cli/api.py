"""`unianimate api`: serve the HTTP API with uvicorn on UNIANIMATE_HOST:UNIANIMATE_PORT."""
from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from service.settings import ApiSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unianimate api", description=__doc__)
    parser.add_argument("--host", help="bind address (default: UNIANIMATE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: UNIANIMATE_PORT or 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv or [])
    try:
        settings = ApiSettings(**{k: v for k, v in {"host": args.host, "port": args.port}.items() if v})
    except ValidationError as exc:
        print(f"invalid UNIANIMATE_* settings:\n{exc}")
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from service.api.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                proxy_headers=True)
    return 0
