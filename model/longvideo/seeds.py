"""Per-segment seeds derived from the job seed.

Each segment gets its own seed so that any segment can be re-rendered on its own (resume after
a crash) and still draw the same noise as in an uninterrupted run. Segment 0 uses the job seed
itself, so a one-segment job renders exactly what the single-segment pipeline renders with that
seed. The derivation is a hash, stable across Python, numpy and torch versions.
"""

from __future__ import annotations

import hashlib

MAX_SEED = 2**63 - 1


def segment_seed(job_seed: int, index: int) -> int:
    """The seed of segment `index` of a job seeded with `job_seed` (a non-negative int < 2**63)."""
    if not 0 <= job_seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {job_seed}")
    if index < 0:
        raise ValueError(f"segment index must be >= 0, got {index}")
    if index == 0:
        return job_seed
    digest = hashlib.sha256(f"unianimate-segment:{job_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED
