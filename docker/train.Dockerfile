# syntax=docker/dockerfile:1.7
# Training image: CUDA runtime + the CUDA build of torch==2.13.0 + the train and azure extras.
# Azure ML runs it as the command job's environment (recsys/orchestration/azureml_job.py).
#
#   docker build -f docker/train.Dockerfile -t recsys-train:0.1.0 .
#   docker run --rm --gpus all --shm-size 16g recsys-train:0.1.0 \
#       --graph abfs://.../graphs/dt=2026-11-27 --out /tmp/model --device cuda
#   # several GPUs on one node, torch DDP (torchrun sets RANK / WORLD_SIZE / MASTER_ADDR):
#   docker run --rm --gpus all --shm-size 16g --entrypoint torchrun recsys-train:0.1.0 \
#       --nproc_per_node 4 --no-python recsys train --graph ... --out ... --device cuda
#
# The CUDA base brings the user-space CUDA/cuDNN; the torch wheel from the cu128 index brings its own
# CUDA libraries and needs only the node's driver (AKS/Azure ML GPU nodes ship it).

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Ubuntu 24.04's Python is 3.12 (the project needs >= 3.11). Apt packages follow the pinned CUDA
# base tag: exact apt pins break rebuilds once Ubuntu's archive drops the old patch release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first and alone: the biggest layer, changed only by TORCH_VERSION / TORCH_INDEX.
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
# The constraints pin torch==2.13.0 as well, so pip keeps the CUDA build installed above.
RUN mkdir recsys && touch recsys/__init__.py \
    && pip install -c requirements/constraints.txt ".[train,azure]" \
    && pip uninstall -y recsys
COPY recsys/ recsys/
RUN pip install --no-deps . \
    && python -c "import torch; assert torch.version.cuda, 'torch is not the CUDA build'; print(torch.__version__, torch.version.cuda)" \
    && recsys --help >/dev/null

FROM ${CUDA_IMAGE} AS runtime
LABEL org.opencontainers.image.title="recsys-train" \
      org.opencontainers.image.description="recsys GNN training (torch CUDA, DDP under torchrun)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # NCCL over the node's InfiniBand/Ethernet; Azure ML sets the rest for multi-node jobs.
    NCCL_DEBUG=WARN \
    TORCH_NCCL_ASYNC_ERROR_HANDLING=1
# libgomp: torch's OpenMP; the rest of the toolchain stays in the build stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 recsys \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/bash recsys
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/recsys
USER 10001:10001
ENTRYPOINT ["recsys", "train"]
CMD ["--help"]
