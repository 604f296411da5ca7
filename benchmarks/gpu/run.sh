#!/bin/bash
# One prepared run on a lent GPU machine (after benchmarks/gpu/prepare.sh here):
#   run(command="bash benchmarks/gpu/run.sh", carry=[".whl", ".devdata"], timeout_s=600)
# 1. goal 2 on the GPU: the recipe of record (gowalla.toml), validated every epoch;
# 2. the goal-1 arms of arms.txt over gowalla-distill.toml, validation on every user, each
#    arm also scored by a run without the fold validated at its end (the digest picks on that).
# Arms start only while time is left ($BUDGET_S, default 520 s from the start), so the run
# ends inside the call; JSON lines land in $OUT/g2.jsonl and $OUT/g1.jsonl, a digest on stdout.
# A dry run here: PY=.venv/bin/python DEVICE=cpu OUT=/tmp/out EXTRA="--epochs 1 ..." run.sh
set -u
export PYTHONUNBUFFERED=1
budget=${BUDGET_S:-520}
t0=$(date +%s)
left() { echo $((budget - ($(date +%s) - t0))); }
py=${PY:-python3}
if ! "$py" -c "import pydantic_settings" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
nvidia-smi -L 2>/dev/null
read -r -a extra <<< "${EXTRA:-}"
common=(--device "${DEVICE:-cuda}" --data .devdata/gowalla --set item_item_keep=0 "${extra[@]}")
timeout 200 "$py" benchmarks/gowalla_arms.py --arm 'recipe=' \
  -- "${common[@]}" --config benchmarks/configs/gowalla.toml --set eval_every=1 \
  > "$OUT/g2.jsonl" 2> "$OUT/g2.err" || echo "goal 2 run: exit $?"
l=$(left)
timeout "$l" "$py" benchmarks/gowalla_arms.py --deadline $((l - 75)) --score-unfolded \
  --teacher-cache .devdata/teachers --arms-file benchmarks/gpu/arms.txt \
  -- "${common[@]}" --config benchmarks/configs/gowalla-distill.toml --set eval_max_users=null \
  > "$OUT/g1.jsonl" 2> "$OUT/g1.err" || echo "goal 1 arms: exit $?"
"$py" benchmarks/gpu/digest.py "$OUT/g2.jsonl" "$OUT/g1.jsonl"
