"""model/ is pure PyTorch/numpy: importing any of it pulls in no web, queue or storage package."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fastapi", "starlette", "uvicorn", "celery", "kombu", "redis", "boto3", "botocore", "httpx")

PROBE = f"""
import importlib, pkgutil, sys
import model
for info in pkgutil.walk_packages(model.__path__, "model."):
    importlib.import_module(info.name)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({FORBIDDEN!r}))
print(",".join(loaded))
"""


def test_no_model_module_imports_web_queue_or_storage_packages():
    done = subprocess.run([sys.executable, "-c", PROBE], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"model/ imports {done.stdout.strip()}"
