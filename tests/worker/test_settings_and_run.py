"""Worker settings and the `unianimate worker` entry: refusals with messages that say what to set."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
from pydantic import ValidationError

from worker import startup_checks as preflight
from worker.load_failure import FailureNote
from worker.renderer_loader import pick_device
from worker.run import main
from worker.settings import ModelNotConfigured, WorkerSettings
from worker.startup_checks import CudaInfo, StartupRefused, check_device


def test_a_model_must_be_chosen(tmp_path):
    with pytest.raises(ModelNotConfigured, match="UNIANIMATE_CHECKPOINT_DIR"):
        WorkerSettings(_env_file=None).require_model()
    with pytest.raises(ModelNotConfigured, match="not a folder"):
        WorkerSettings(_env_file=None, checkpoint_dir=tmp_path / "missing").require_model()
    WorkerSettings(_env_file=None, checkpoint_dir=tmp_path).require_model()
    WorkerSettings(_env_file=None, model="tiny").require_model()


def test_environment_settings(monkeypatch):
    monkeypatch.setenv("UNIANIMATE_MODEL", "tiny")
    monkeypatch.setenv("UNIANIMATE_WEBHOOK_ALLOW_HOSTS", "hooks.internal, 10.0.0.5")
    monkeypatch.setenv("UNIANIMATE_LEASE_TTL_S", "7")
    settings = WorkerSettings()
    assert settings.webhook_allow_hosts == {"hooks.internal", "10.0.0.5"}
    assert WorkerSettings(_env_file=None, dtype="float16").dtype == "fp16"
    assert settings.sweep_every_s == 3.5 and settings.visibility_timeout_s > settings.time_limit_s


def test_bad_settings_are_refused():
    with pytest.raises(ValidationError, match="whsec_"):
        WorkerSettings(_env_file=None, webhook_secret="not-a-secret")
    with pytest.raises(ValidationError, match="must exceed soft_time_limit_s"):
        WorkerSettings(_env_file=None, soft_time_limit_s=100, time_limit_s=100)


@pytest.mark.parametrize(("argv", "env", "message"), [
    ([], {}, "UNIANIMATE_CHECKPOINT_DIR"),
    (["--queues", "render,gpu"], {}, "unknown queue"),
    (["--pool", "threads"], {"UNIANIMATE_MODEL": "tiny"}, "prefork"),
    (["--queues", "webhooks"], {}, "UNIANIMATE_WEBHOOK_SECRET"),
])
def test_the_worker_refuses_to_start_misconfigured(monkeypatch, capsys, argv, env, message):
    for name in ("UNIANIMATE_MODEL", "UNIANIMATE_CHECKPOINT_DIR", "UNIANIMATE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_each_worker_process_takes_its_own_gpu():
    assert pick_device(None, 0, cuda_count=0) == "cpu"
    assert pick_device(None, 3, cuda_count=1) == "cuda:0"  # explicit, so set_device can bind it
    assert [pick_device("cuda", i, cuda_count=2) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert pick_device("cuda:1", 0, cuda_count=2) == "cuda:1"


def test_cpu_offload_setting_reaches_the_pipeline(monkeypatch):
    """UNIANIMATE_CPU_OFFLOAD keeps the VAE and CLIP on the CPU in float32 while the UNet uses DTYPE."""
    import torch

    from worker.renderer_loader import load_renderer

    monkeypatch.setenv("UNIANIMATE_CPU_OFFLOAD", "true")
    renderer = load_renderer(WorkerSettings(_env_file=None, model="tiny", device="cpu", dtype="bf16"))
    assert renderer.unet.dtype == torch.bfloat16
    assert renderer.vae.dtype == torch.float32 and renderer.image_encoder.dtype == torch.float32


def test_a_checkpoint_folder_without_the_weights_is_refused_before_celery_starts(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("UNIANIMATE_MODEL", raising=False)
    monkeypatch.setenv("UNIANIMATE_CHECKPOINT_DIR", str(tmp_path))
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "UNIANIMATE_CHECKPOINT_DIR" in err and "missing unianimate_16f_32f_non_ema_223000.pth" in err


def test_a_cuda_device_that_is_not_there_is_refused(monkeypatch, capsys):
    """The real probe: no machine this runs on has 100 GPUs."""
    monkeypatch.setenv("UNIANIMATE_MODEL", "tiny")
    monkeypatch.setenv("UNIANIMATE_DEVICE", "cuda:99")
    assert main([]) == 2
    assert "UNIANIMATE_DEVICE=cuda:99, but" in capsys.readouterr().err


@pytest.mark.parametrize(("device", "info", "message"), [
    ("cuda", CudaInfo(built=False, count=0, torch="2.0+cpu"), "built without CUDA"),
    ("cuda", CudaInfo(built=True, count=0, torch="2.0"), "no CUDA GPU is visible"),
    ("cuda:2", CudaInfo(built=True, count=2, torch="2.0"), "only 2 GPU(s)"),
    ("cuda:1", CudaInfo(built=True, count=2, torch="2.0"), None),
    ("cpu", None, None),
    (None, None, None),
])
def test_device_checks(device, info, message):
    def probe() -> CudaInfo:
        assert info is not None, "cpu needs no probe"
        return info

    if message is None:
        check_device(device, probe)
    else:
        with pytest.raises(StartupRefused, match=re.escape(message)):
            check_device(device, probe)
    with pytest.raises(ValidationError, match="device"):
        WorkerSettings(_env_file=None, device="gpu")


@pytest.mark.parametrize("stdout", ["", "Warning: something\n", "[1, 2]\n"])
def test_an_unreadable_probe_answer_is_a_startup_refusal(monkeypatch, stdout):
    monkeypatch.setattr(preflight.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=stdout, stderr=""))
    with pytest.raises(StartupRefused, match="could not read PyTorch's answer"):
        preflight.probe_cuda()


def test_a_forked_child_leaves_its_failure_to_the_parent():
    note = FailureNote()
    assert note.read() is None
    pid = os.fork()
    if pid == 0:  # the child, as a pool process whose model failed
        note.write("render process 0 could not load the model: CheckpointError: damaged")
        os._exit(0)
    os.waitpid(pid, 0)
    assert note.read() == "render process 0 could not load the model: CheckpointError: damaged"
    note.write("a later failure")
    assert note.read().endswith("damaged"), "the first failure is the one reported"


def test_a_render_process_binds_its_gpu(monkeypatch):
    """Each process makes its GPU current, so memory queries and empty_cache target it (not GPU 0)."""
    import torch

    from worker.renderer_loader import bind_device

    bound = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: bound.append(str(device)))
    bind_device("cpu")
    bind_device(pick_device("cuda", 3, cuda_count=2))
    assert bound == ["cuda:1"]
