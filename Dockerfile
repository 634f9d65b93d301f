# syntax=docker/dockerfile:1.7
# One image for the API, the GPU render worker and the webhook worker; the command picks the role.
# The released checkpoints are NOT baked in: mount them read-only at /models (see docs/deploy.md).
#
# Two stages: the CUDA "devel" image has nvcc, which the [gpu] extra's kernels (mamba-ssm,
# causal-conv1d) may need to compile; the final image is the much smaller "runtime" image with the
# finished virtual environment copied over. Both stages use the same OS and Python path, so the
# venv's interpreter links stay valid after the copy.

ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=22.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# GPU generations to compile kernels for: A100 (8.0), A10/RTX 30 (8.6), L4/RTX 40 (8.9), H100/H200 (9.0).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ARG MAX_JOBS=4

# MAMBA_KEEP_CUDA_BUILD: mamba-ssm after 2.3.2 builds its selective-scan kernel (which the temporal
# Mamba blocks call) only when asked; older releases ignore the variable.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    MAX_JOBS=${MAX_JOBS} \
    MAMBA_KEEP_CUDA_BUILD=TRUE

# Ubuntu 22.04 ships Python 3.10; the deadsnakes archive provides 3.11.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gnupg ca-certificates git \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH}

# The CUDA build of torch first and pinned exactly, so the project's `torch==2.13.0` is already met
# and nothing pulls a CPU build from PyPI.
RUN pip install --upgrade pip setuptools wheel packaging ninja \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
COPY worker ./worker
COPY cli ./cli
# No build isolation: the CUDA kernels compile against the torch installed above.
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` package: drop both, then reinstall the
# GPU build alone, so DWPose finds its CUDAExecutionProvider whatever order pip used.
RUN pip install --no-build-isolation ".[gpu]" \
 && pip uninstall -y onnxruntime onnxruntime-gpu \
 && pip install --no-deps "onnxruntime-gpu>=1.18" \
 && python -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__" \
 && python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"


FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gnupg ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 \
 && apt-get purge -y software-properties-common gnupg \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup. /cache is
# made here, owned by it, because a new named volume mounted there copies that owner (weights cache).
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
 && mkdir -p /models /cache \
 && chown app:app /models /cache

COPY --from=build /opt/venv /opt/venv
# the web page's "use the example" inputs (settings.examples_dir looks in the venv's share/)
COPY examples /opt/venv/share/unianimate/examples

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    UNIANIMATE_CHECKPOINT_DIR=/models \
    UNIANIMATE_DEVICE=cuda \
    UNIANIMATE_DTYPE=float16

USER 10001:10001
WORKDIR /home/app
EXPOSE 8000

ENTRYPOINT ["unianimate"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
