#!/usr/bin/env bash
# Installs everything the project needs into ./.venv and ./node_modules.
# Idempotent: a second run with unchanged pyproject/constraints/package files is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# System services the tests and the production-shape demo run for real: Redis (live
# state across replicas), nginx (the replicas demo), HAProxy + wrk (the rolling-update
# rehearsal behind a load balancer whose endpoints change without a reload), Chromium
# (the browser tests of the pages, headless, driven by Playwright: never `playwright install`),
# a Java 17 runtime (PySpark's JVM for `--engine spark`: the pyspark wheel carries Spark's jars,
# nothing is fetched at run time).
# Installed from Debian's packages once; skipped when already present.
system_packages=(redis-server:redis-server nginx:nginx haproxy:haproxy wrk:wrk chromium:chromium
                 java:openjdk-17-jre-headless)
missing=()
for entry in "${system_packages[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing Debian packages: ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
        # Debian starts the services it installs; the project starts its own on free ports.
        for svc in redis-server nginx haproxy; do
            command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1 || true
        done
    else
        echo "setup: missing system packages (${missing[*]}); install them with apt-get as root" >&2
        exit 1
    fi
fi
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
    .venv/bin/python -c "import recsys, torch, onnxruntime, airflow, great_expectations, pyspark" \
        >/dev/null 2>&1 \
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
