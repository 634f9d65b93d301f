"""`python -m model.conformance PATH...`: one line per fixture, exit 0 only if all pass."""
from __future__ import annotations

import sys
from pathlib import Path

from model.conformance import check_file


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m model.conformance FIXTURE [FIXTURE ...]", file=sys.stderr)
        return 2
    results = [check_file(Path(p)) for p in argv]
    for result in results:
        print(result.line(), flush=True)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
