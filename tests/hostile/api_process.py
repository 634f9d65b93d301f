"""The API as a real uvicorn process on loopback (no worker: jobs stay queued), and its memory."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.procs import free_port, running, wait_until

REPO = Path(__file__).resolve().parents[2]
SERVE = "import sys; from cli.api import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class ApiProcess:
    url: str
    pid: int
    log: Path

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak since start) of the API process, in KiB."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields


@contextlib.contextmanager
def api_process(redis_url: str, workdir: Path, **settings: str) -> Iterator[ApiProcess]:
    """Serve the API with UNIANIMATE_* settings (production defaults unless given)."""
    port = free_port()
    unset = [arg for name in os.environ if name.startswith("UNIANIMATE_") for arg in ("-u", name)]
    assign = {"PYTHONPATH": str(REPO), "UNIANIMATE_REDIS_URL": redis_url, "UNIANIMATE_STORAGE": "local",
              "UNIANIMATE_LOCAL_STORAGE_DIR": str(workdir / "storage"), "UNIANIMATE_PORT": str(port),
              **{f"UNIANIMATE_{name.upper()}": value for name, value in settings.items()}}
    argv = ["env", *unset, *(f"{k}={v}" for k, v in assign.items()),  # env execs python: same pid
            sys.executable, "-c", SERVE, "--log-level", "warning"]
    log = workdir / "api.log"
    with running(argv, log, REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, proc, 60, "the API", log)
        yield ApiProcess(url, proc.pid, log)
