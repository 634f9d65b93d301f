"""The API process must start without torch: importing it must not load torch."""
import subprocess
import sys
import textwrap


def test_api_imports_without_torch():
    code = textwrap.dedent("""
        import sys
        import service.app, service.cli, service.storage_s3, service.metrics
        service.app.create_app()
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        print("no torch")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "no torch" in done.stdout
