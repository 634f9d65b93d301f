"""`unianimate keys`: each API key's limits and what it uses now, and per-key overrides.

    unianimate keys list                                  # every key that made a job: usage and limits
    unianimate keys set KEY --max-queued 500 --rate-per-s 50   # this key's own limits (0 = none)
    unianimate keys reset KEY [--limit max_queued ...]    # back to the defaults (UNIANIMATE_KEY_*)

KEY is the API key itself, its sha256 (the `owner` in records and the `key` label of /metrics,
whose first 16 hex digits are enough when they match one key) or `anonymous`. Overrides live in
Redis and apply at once to every API process and worker. Reads UNIANIMATE_REDIS_URL.
"""
from __future__ import annotations

import argparse
import re
import sys

from pydantic import ValidationError

from service.jobs.key_limits import LIMIT_NAMES, KeyLimits, KeyLimitStore
from service.jobs.owners import key_owner
from service.settings import ApiSettings

HASH_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


def resolve_owner(text: str, known: list[str]) -> str:
    """The owner id named by `text` (see the module's docstring); ValueError if a prefix is ambiguous."""
    if text == "anonymous" or len(text) == 64 and HASH_PREFIX.match(text):
        return text
    if HASH_PREFIX.match(text):
        matches = [owner for owner in known if owner.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"{text!r} is the start of {len(matches)} key hashes; give more digits")
    return key_owner(text)


def _table(store: KeyLimitStore, owners: list[str]) -> str:
    head = ["key", "queued", "waiting", "running", "gpu_s_today", *LIMIT_NAMES, "overrides"]
    rows = [head]
    for owner in owners:
        usage, limits, overrides = store.usage(owner), store.limits(owner), store.overrides(owner)
        rows.append([owner[:16], str(usage.queued), str(usage.waiting), str(usage.running),
                     f"{usage.gpu_seconds_today:.0f}", *(f"{getattr(limits, name):g}" for name in LIMIT_NAMES),
                     ",".join(sorted(overrides)) or "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unianimate keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every key that made a job: usage, limits, overrides")
    show = commands.add_parser("show", help="one key")
    show.add_argument("key")
    change = commands.add_parser("set", help="give a key its own limits (0 = no limit)")
    change.add_argument("key")
    for name in LIMIT_NAMES:
        change.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, metavar="N")
    reset = commands.add_parser("reset", help="drop a key's overrides (all, or the --limit ones)")
    reset.add_argument("key")
    reset.add_argument("--limit", action="append", choices=LIMIT_NAMES, default=[])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = ApiSettings()
    except ValidationError as exc:
        print(f"invalid UNIANIMATE_* settings:\n{exc}", file=sys.stderr)
        return 2
    store = KeyLimitStore.from_url(settings.redis_url, KeyLimits.from_settings(settings), settings.redis_timeout_s)
    known = store.owners.owners(store.redis)
    if args.command == "list":
        print(_table(store, known))
        return 0
    try:
        owner = resolve_owner(args.key, known)
        if args.command == "set":
            values = {name: getattr(args, name) for name in LIMIT_NAMES if getattr(args, name) is not None}
            if not values:
                raise ValueError("name at least one limit to set, e.g. --max-queued 500")
            store.set_overrides(owner, values)
        elif args.command == "reset":
            store.clear_overrides(owner, tuple(args.limit))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_table(store, [owner]))
    return 0
