#!/usr/bin/env bash
# The main job on embedded defaults: a synthetic shop -> validated lake -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
LAKE=${DEMO_LAKE:-./lake}
DATE=${DEMO_DATE:-2026-11-27}
R=.venv/bin/recsys

$R synth --out "$LAKE" --users 2000 --items 500 --days 14 --end-date "$DATE" --seed 1
$R validate --lake "$LAKE" --date "$DATE"
