"""The deployment files, read the way Docker, Compose and Kubernetes read them.

Docker cannot run in CI, so these tests parse the files and assert the properties a broken deploy
would lose: every service present, the GPU reserved for the render worker, durable Redis, the
bucket created before the app starts, a non-root image, read-only model weights, env var names that
the settings understand, and health probes on the API's real endpoints.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"

# The settings' environment names (DESIGN.md / the settings module, prefix UNIANIMATE_).
SETTINGS_ENV = {
    "UNIANIMATE_REDIS_URL", "UNIANIMATE_STORAGE", "UNIANIMATE_S3_ENDPOINT", "UNIANIMATE_S3_BUCKET",
    "UNIANIMATE_S3_ACCESS_KEY", "UNIANIMATE_S3_SECRET_KEY", "UNIANIMATE_S3_REGION", "UNIANIMATE_API_KEYS",
    "UNIANIMATE_WEBHOOK_SECRET", "UNIANIMATE_WEBHOOK_ALLOW_HOSTS", "UNIANIMATE_CHECKPOINT_DIR",
    "UNIANIMATE_MODEL", "UNIANIMATE_DEVICE", "UNIANIMATE_DTYPE", "UNIANIMATE_S3_PUBLIC_ENDPOINT",
    "UNIANIMATE_CACHE_DIR", "UNIANIMATE_MAX_UPLOAD_BYTES", "UNIANIMATE_JOB_RETENTION_S",
}
# Deployment-only knobs read by docker compose itself, never by the application.
COMPOSE_ONLY_ENV = {"UNIANIMATE_IMAGE", "UNIANIMATE_MODELS_DIR", "UNIANIMATE_API_PORT"}


# ---------------------------------------------------------------- loaders


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") != "Kustomization"]
    return docs


def _k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in deploy/k8s, found {len(found)}"
    return found[0]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(args.split())))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _compose_env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (_services()[service].get("environment") or {}).items()}


def _k8s_env_names(doc: dict[str, Any]) -> set[str]:
    container = _containers(doc)[0]
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(_k8s("ConfigMap", source["configMapRef"]["name"])["data"])
    return names


# ---------------------------------------------------------------- docker compose


def test_compose_has_every_service() -> None:
    assert set(_services()) == {"api", "worker", "webhook-worker", "redis", "minio", "minio-init"}


def test_app_commands_are_real_cli_subcommands() -> None:
    entrypoint = next(json for keyword, json in _final_stage() if keyword == "ENTRYPOINT")
    assert entrypoint == '["unianimate"]'
    for name in ("api", "worker", "webhook-worker"):
        assert _services()[name]["command"][0] in COMMANDS, name
    assert _services()["api"]["command"][:1] == ["api"]


def test_render_worker_reserves_one_nvidia_gpu_and_runs_one_job_at_a_time() -> None:
    worker = _services()["worker"]
    assert worker["command"] == ["worker", "--queues", "render", "--concurrency", "1"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert _compose_env("worker")["UNIANIMATE_DEVICE"] == "cuda"


def test_webhook_worker_is_light_and_alone_holds_the_signing_secret() -> None:
    hooks = _services()["webhook-worker"]
    assert hooks["command"] == ["worker", "--queues", "webhooks"]
    assert "deploy" not in hooks  # no GPU
    assert "UNIANIMATE_WEBHOOK_SECRET" in _compose_env("webhook-worker")
    assert "UNIANIMATE_WEBHOOK_SECRET" not in _compose_env("worker")
    assert "UNIANIMATE_WEBHOOK_SECRET" not in _compose_env("api")


def test_compose_redis_is_durable_and_never_evicts() -> None:
    redis = _services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    # docs/reliability.md's "no job lost when Redis crashes" holds only with an fsync per write
    assert command[command.index("--appendfsync") + 1] == "always"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_minio_bucket_is_created_once_before_the_app_starts() -> None:
    services = _services()
    init = services["minio-init"]
    assert init["restart"] == "no"
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(init["command"])
    assert "mc mb --ignore-existing" in script and "$$UNIANIMATE_S3_BUCKET" in script
    assert init["environment"]["UNIANIMATE_S3_BUCKET"] == _compose_env("api")["UNIANIMATE_S3_BUCKET"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]


def test_app_talks_to_the_compose_backends() -> None:
    env = _compose_env("worker")
    assert env["UNIANIMATE_REDIS_URL"] == "redis://redis:6379/0"
    assert env["UNIANIMATE_STORAGE"] == "s3" and env["UNIANIMATE_S3_ENDPOINT"] == "http://minio:9000"
    minio_env = _services()["minio"]["environment"]
    assert env["UNIANIMATE_S3_ACCESS_KEY"] == minio_env["MINIO_ROOT_USER"]
    assert env["UNIANIMATE_S3_SECRET_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_result_links_point_where_clients_can_download() -> None:
    """Presigned URLs are signed for UNIANIMATE_S3_PUBLIC_ENDPOINT: MinIO must be published there,
    not only reachable as http://minio:9000 inside the compose network."""
    for name in ("api", "worker"):  # the worker presigns the links in webhook payloads
        public = _compose_env(name)["UNIANIMATE_S3_PUBLIC_ENDPOINT"]
        assert public == "${UNIANIMATE_S3_PUBLIC_ENDPOINT:-http://localhost:9000}", public
    published = [p for p in _services()["minio"]["ports"] if p.endswith(":9000")]
    assert published == ["${MINIO_API_BIND:-127.0.0.1}:9000:9000"], published
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    assert re.search(r"^UNIANIMATE_S3_PUBLIC_ENDPOINT=http://localhost:9000$", example, re.MULTILINE)
    assert re.search(r"^MINIO_API_BIND=127\.0\.0\.1$", example, re.MULTILINE)


def test_compose_worker_keeps_converted_weights_on_a_named_volume() -> None:
    worker = _services()["worker"]
    cache = _compose_env("worker")["UNIANIMATE_CACHE_DIR"]
    assert f"model-cache:{cache}" in worker["volumes"] and "model-cache" in _compose()["volumes"]
    # a new named volume takes the owner of the image's directory: it must exist there, owned by the app
    assert any(k == "RUN" and f"mkdir -p /models {cache}" in a and f"chown app:app /models {cache}" in a
               for k, a in _final_stage())


def test_compose_models_are_mounted_read_only_where_the_settings_look() -> None:
    volumes = _services()["worker"]["volumes"]
    assert any(v.endswith(":/models:ro") for v in volumes), volumes
    assert _compose_env("worker")["UNIANIMATE_CHECKPOINT_DIR"] == "/models"


def test_api_healthcheck_probes_healthz_on_the_port_it_listens_on() -> None:
    api = _services()["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert any(mapping.endswith(f":{port}") for mapping in api["ports"])


def test_every_required_compose_variable_is_in_the_example_env_file() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert required and required <= defined, required - defined


# ---------------------------------------------------------------- Dockerfile


def test_image_is_cuda_runtime_with_python_311_and_pinned_cuda_torch() -> None:
    instructions = _dockerfile()
    text = " ".join(args for _, args in instructions)
    final_from = _final_stage()[0][1]
    assert final_from.startswith("nvidia/cuda:") and "-runtime-" in final_from
    assert "python3.11" in text
    assert re.search(r"ARG TORCH_VERSION=2\.13\.0", "\n".join(f"{k} {a}" for k, a in instructions))
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in text
    assert "download.pytorch.org/whl/cu" in text
    torch_at = text.index("torch==${TORCH_VERSION}")
    assert torch_at < text.index('".[gpu]"'), "CUDA torch must be installed before the project"


def test_gpu_extra_is_built_with_its_cuda_kernels_against_the_installed_torch() -> None:
    instructions = _dockerfile()
    gpu_install = next(i for i, (_, args) in enumerate(instructions) if '".[gpu]"' in args)
    assert "--no-build-isolation" in instructions[gpu_install][1]
    env_before = " ".join(args for keyword, args in instructions[:gpu_install] if keyword == "ENV")
    assert "MAMBA_KEEP_CUDA_BUILD=TRUE" in env_before, "newer mamba-ssm skips its selective-scan kernel without it"


def test_image_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in _final_stage() if keyword == "USER"]
    assert users, "the final stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"


def test_image_points_the_settings_at_the_models_mount() -> None:
    env = " ".join(args for keyword, args in _final_stage() if keyword == "ENV")
    assert "UNIANIMATE_CHECKPOINT_DIR=/models" in env
    assert not any(keyword == "ADD" for keyword, _ in _dockerfile()), "use COPY; ADD fetches URLs"


def test_build_context_leaves_out_venvs_and_weights() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "models", "*.pth", "*.ckpt"} <= ignored


# ---------------------------------------------------------------- Kubernetes


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    (secret,) = kustomization["secretGenerator"]
    assert secret["name"] == "unianimate-secrets" and secret["envs"] == ["secrets.env"]


def test_api_deployment_and_service_with_health_probes() -> None:
    api = _k8s("Deployment", "api")
    (container,) = _containers(api)
    assert container["args"][0] == "api"
    port_name = container["ports"][0]["name"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
    service = _k8s("Service", "api")
    assert service["spec"]["selector"] == api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == port_name


def test_gpu_worker_requests_one_gpu_and_mounts_models_read_only() -> None:
    worker = _k8s("Deployment", "worker-gpu")
    (container,) = _containers(worker)
    assert container["args"] == ["worker", "--queues", "render", "--concurrency", "1"]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1 == resources["limits"]["nvidia.com/gpu"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in worker["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    _k8s("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert _k8s("ConfigMap", "unianimate-config")["data"]["UNIANIMATE_CHECKPOINT_DIR"] == "/models"
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)", value).groups()
    return int(number) * units[unit]


def test_api_tmp_volume_holds_the_largest_uploads_it_accepts() -> None:
    """An upload sits in /tmp twice (Starlette's spool, then the copy that is checked), JSON inputs
    once each; past its sizeLimit the kubelet evicts the pod and every request in it. The rule
    (docs/deploy.md): sizeLimit >= 2 x (MAX_UPLOAD_BYTES + MAX_JSON_BYTES) per upload in flight."""
    from service.settings import ApiSettings

    api = _k8s("Deployment", "api")
    (container,) = _containers(api)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    defaults = ApiSettings.model_fields
    max_upload = int(env.get("UNIANIMATE_MAX_UPLOAD_BYTES", defaults["max_upload_bytes"].default))
    max_json = int(env.get("UNIANIMATE_MAX_JSON_BYTES", defaults["max_json_bytes"].default))
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in api["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    uploads_at_once = _quantity_bytes(volume["emptyDir"]["sizeLimit"]) // (2 * (max_upload + max_json))
    assert uploads_at_once >= 2, (volume, max_upload)


def test_gpu_worker_caches_converted_weights_on_a_shared_volume() -> None:
    worker = _k8s("Deployment", "worker-gpu")
    (container,) = _containers(worker)
    cache = next(e["value"] for e in container["env"] if e["name"] == "UNIANIMATE_CACHE_DIR")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == cache]
    assert not mount.get("readOnly")
    pod = worker["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = _k8s("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every GPU worker reads what the first wrote
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_webhook_worker_deployment() -> None:
    hooks = _k8s("Deployment", "webhook-worker")
    (container,) = _containers(hooks)
    assert container["args"] == ["worker", "--queues", "webhooks"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert "UNIANIMATE_WEBHOOK_SECRET" in _k8s_env_names(hooks)
    assert "UNIANIMATE_WEBHOOK_SECRET" not in _k8s_env_names(_k8s("Deployment", "worker-gpu"))


def test_redis_statefulset_keeps_an_append_only_file_on_a_volume() -> None:
    redis = _k8s("StatefulSet", "redis")
    (container,) = _containers(redis)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in container["volumeMounts"]
    assert _k8s("Service", redis["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_keda_scales_the_gpu_worker_on_the_render_list() -> None:
    scaled = _k8s("ScaledObject", "worker-gpu")
    target = scaled["spec"]["scaleTargetRef"]["name"]
    _k8s("Deployment", target)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "render"
    redis_url = _k8s("ConfigMap", "unianimate-config")["data"]["UNIANIMATE_REDIS_URL"]
    host, port = re.match(r"redis://([^:/]+):(\d+)/(\d+)", redis_url).group(1, 2)
    assert trigger["metadata"]["address"].startswith(f"{host}.unianimate.svc")
    assert trigger["metadata"]["address"].endswith(f":{port}")
    assert trigger["metadata"]["databaseIndex"] == redis_url.rsplit("/", 1)[1]


def test_every_app_container_is_non_root_and_locked_down() -> None:
    for doc in _k8s_docs():
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_secret_references_exist_in_the_example_secrets_file() -> None:
    example = (K8S / "secrets.env.example").read_text()
    keys = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    for doc in _k8s_docs():
        if doc["kind"] != "Deployment":
            continue
        for env in _containers(doc)[0].get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "unianimate-secrets" and ref["key"] in keys, env


# ---------------------------------------------------------------- names shared with the settings


def _unianimate_names(text: str) -> set[str]:
    return set(re.findall(r"\bUNIANIMATE_[A-Z0-9_]+\b", text))


def test_env_var_names_are_settings_names() -> None:
    texts = [(ROOT / "docker-compose.yml").read_text(), (ROOT / "deploy" / "compose.env.example").read_text()]
    compose_names = set().union(*map(_unianimate_names, texts))
    assert compose_names - COMPOSE_ONLY_ENV <= SETTINGS_ENV, compose_names - COMPOSE_ONLY_ENV - SETTINGS_ENV
    assert SETTINGS_ENV <= compose_names, SETTINGS_ENV - compose_names
    k8s_names = set().union(*(_unianimate_names(p.read_text()) for p in K8S.iterdir() if p.is_file()))
    k8s_names |= _unianimate_names((ROOT / "Dockerfile").read_text())
    assert k8s_names <= SETTINGS_ENV, k8s_names - SETTINGS_ENV


def test_settings_modules_read_these_names() -> None:
    """Every UNIANIMATE_* name the deployment sets is a field of the API's or the worker's settings."""
    import importlib

    from pydantic_settings import BaseSettings

    modules = [importlib.import_module(name) for name in ("service.settings", "worker.settings")]
    classes = [c for m in modules for c in vars(m).values() if isinstance(c, type) and issubclass(c, BaseSettings)]
    assert classes, "no BaseSettings class in service.settings or worker.settings"
    names = set()
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        names |= {(prefix + field).upper() for field in cls.model_fields}
        names |= {f.alias.upper() for f in cls.model_fields.values() if f.alias}
    assert SETTINGS_ENV <= names, SETTINGS_ENV - names


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    shutil.copy(copy / "secrets.env.example", copy / "secrets.env")
    result = subprocess.run(
        ["kubectl", "kustomize", str(copy)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = list(yaml.safe_load_all(result.stdout))
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"unianimate"}
    assert {d["kind"] for d in rendered} >= {"Deployment", "StatefulSet", "ScaledObject", "Secret"}


def test_the_image_copies_every_package_it_installs():
    """`pip install .` in the image builds from the copied tree: a package left out of the COPY lines
    (cli/ once was) would be missing from the installed command."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = {args.split()[0].rstrip("/") for keyword, args in _dockerfile() if keyword == "COPY" and "--from" not in args}
    assert packages <= copied, f"the Dockerfile does not COPY {sorted(packages - copied)}"
