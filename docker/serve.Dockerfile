# syntax=docker/dockerfile:1.7
# Inference image: FastAPI + onnxruntime, no torch, no CUDA; runs as a non-root user.
#
#   docker build -f docker/serve.Dockerfile -t recsys-serve:0.1.0 .
#   # optional: bake one bundle in at /app/bundle (else the bundle comes from the lake at start)
#   docker build -f docker/serve.Dockerfile --build-context bundle=./registry/bundles/<version> \
#       -t recsys-serve:0.1.0-<version> .
#   docker run --rm -p 8080:8080 -e RECSYS_API_KEY=... recsys-serve:0.1.0            # baked bundle
#   docker run --rm -p 8080:8080 recsys-serve:0.1.0 serve --bundle abfs://lake@acct.dfs.core.windows.net/bundles/<v> \
#       --host 0.0.0.0 --port 8080
#
# Base images are pinned by tag; CI should pin them by digest too (docker buildx imagetools inspect).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# An empty default for the optional `bundle` build context: `--build-context bundle=DIR` replaces it.
FROM scratch AS bundle

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, keyed only on the pins: editing recsys/ does not reinstall them.
# The lake needs adlfs + azure-identity only; azure-ai-ml (the rest of the azure extra) stays out;
# redis-entraid lets the pods reach Azure Managed Redis with their workload identity.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN mkdir recsys && touch recsys/__init__.py \
    && pip install -c requirements/constraints.txt ".[serve,entra]" adlfs azure-identity \
    && pip uninstall -y recsys
COPY recsys/ recsys/
RUN pip install --no-deps . \
    # The serving image must never carry torch (design rule; also 2 GB it does not need).
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && recsys --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="recsys-serve" \
      org.opencontainers.image.description="recsys real-time recommendation server (onnxruntime)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    RECSYS_PORT=8080
# A fixed numeric uid, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 recsys \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin recsys
COPY --from=build /opt/venv /opt/venv
COPY --from=bundle --chown=10001:10001 / /app/bundle/
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Docker and Compose use this; Kubernetes uses the chart's /readyz and /healthz probes instead.
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECSYS_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["recsys"]
CMD ["serve", "--bundle", "/app/bundle", "--host", "0.0.0.0", "--port", "8080"]
