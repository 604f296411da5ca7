#!/bin/bash
# Prepares, on this (CPU) machine, what benchmarks/gpu/run.sh needs on a lent GPU machine,
# whose image has torch but not pydantic and friends, and no network:
#   .whl/       wheels (CPython 3.12, x86-64) of the packages recsys.training imports
#               beyond that image, at the versions of this project's .venv
#   .devdata/   the Gowalla split and the distillation teachers' lists of every arm in
#               arms.txt (CPU-bound: ~5 min each, better spent here than on the lease)
# Both are ignored by git (.git/info/exclude) and travel with `carry: [".whl", ".devdata"]`.
# Usage: benchmarks/gpu/prepare.sh [GOWALLA_DIR]   (default ../shared/datasets/gowalla)
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/datasets/gowalla}
for p in /.whl/ /.devdata/; do grep -qxF "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
for pkg in pydantic pydantic_core pydantic-settings annotated-types python-dotenv \
    typing-inspection typing_extensions; do
  v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl "$pkg==$v"
done
mkdir -p .devdata/gowalla
cp "$data"/train.txt.gz "$data"/test.txt.gz .devdata/gowalla/
.venv/bin/python benchmarks/gowalla_arms.py --prepare-teachers --teacher-cache .devdata/teachers \
  --arms-file benchmarks/gpu/arms.txt -- --data .devdata/gowalla --config benchmarks/configs/gowalla-distill.toml
du -sh .whl .devdata
