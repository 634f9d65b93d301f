"""`unianimate api` starts uvicorn on UNIANIMATE_HOST/PORT and answers."""
import os
import subprocess
import sys
import time

import httpx

from tests.support.procs import free_port


def test_unianimate_api_serves_healthz(redis_url, tmp_path):
    port = free_port()
    env = {**os.environ, "UNIANIMATE_PORT": str(port), "UNIANIMATE_HOST": "127.0.0.1",
           "UNIANIMATE_REDIS_URL": redis_url, "UNIANIMATE_LOCAL_STORAGE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.2)
        assert ready.json()["status"] == "ready"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_settings_exit_2(monkeypatch):
    from cli.api import main

    monkeypatch.setenv("UNIANIMATE_PORT", "99999")
    assert main([]) == 2
