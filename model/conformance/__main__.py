"""`python -m model.conformance [--conditions SET]... PATH...`: one line per fixture (per condition set
for kind `pipeline`), exit 0 only if all pass.

`--conditions` (repeatable) restricts pipeline files to the passes of those condition sets
(`model.conditions`: `image,local_image,dwpose`, `image,randomref,dwpose` or `chained`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.conditions import CONDITION_SETS
from model.conformance import check_file_results


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m model.conformance [--conditions SET]... FIXTURE [FIXTURE ...]", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m model.conformance")
    parser.add_argument("--conditions", action="append", choices=list(CONDITION_SETS),
                        help="replay only this condition set of pipeline files (repeatable)")
    parser.add_argument("fixtures", nargs="+", type=Path)
    args = parser.parse_args(argv)
    results = []
    for path in args.fixtures:
        for result in check_file_results(path, args.conditions):
            print(result.line(), flush=True)
            results.append(result)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
