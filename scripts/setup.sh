#!/usr/bin/env bash
# Installs everything the project needs into ./.venv and ./node_modules.
# Idempotent: a second run with unchanged pyproject/constraints/package files is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.recsys-installed
want=$(cat pyproject.toml requirements/constraints.txt package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> creating .venv and installing recsys[all] (first run takes a few minutes)"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade "pip>=24"
    # torch==2.13.0 is pinned: pip takes the CPU wheel where the machine ships one
    # (find-links /opt/wheels), else the PyPI release.
    extra=()
    [ -d /opt/wheels ] && extra+=(--find-links /opt/wheels)
    .venv/bin/python -m pip install --quiet "${extra[@]}" \
        -c requirements/constraints.txt -e ".[all]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import recsys, torch, onnxruntime, airflow, great_expectations" >/dev/null 2>&1 \
        || { echo "setup: the Python install is incomplete (import check failed)" >&2; exit 1; }
    if command -v npm >/dev/null; then
        echo "==> installing Azurite (Azure Storage emulator) from npm"
        npm ci --silent --no-audit --no-fund >/dev/null
    else
        echo "setup: npm not found; the Azurite tests need Node.js and npm" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
