"""How hard the property and schema tests try. `make test` runs the fast defaults; `make fuzz`
sets UNIANIMATE_FUZZ_SCALE (e.g. 50) to multiply every example count."""
from __future__ import annotations

import os


def examples(fast: int) -> int:
    """Examples per property: `fast` times UNIANIMATE_FUZZ_SCALE (default 1)."""
    scale = float(os.environ.get("UNIANIMATE_FUZZ_SCALE", "1"))
    return max(1, round(fast * scale))
