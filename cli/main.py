"""The `unianimate` command. Each subcommand lives with the code it drives and is imported
only when used, so `unianimate api` never imports torch."""
from __future__ import annotations

import importlib
import sys

# subcommand -> ("module:function", one-line help); each function takes argv (list[str]) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "api": ("cli.api:main", "run the HTTP API (uvicorn)"),
    "worker": ("worker.run:main", "run a Celery worker (render or webhook queues)"),
    "render": ("cli.render:main", "render an animation locally to an MP4"),
    "pose": ("cli.pose:main", "pose tools: render, align, preview, extract"),
    "reproduce": ("cli.reproduce:main", "render a job's video again from its manifest.json"),
    "keys": ("cli.keys:main", "API keys: usage, limits and per-key overrides"),
}


def _usage() -> str:
    lines = ["usage: unianimate COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
