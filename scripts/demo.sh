#!/usr/bin/env bash
# The main job on embedded defaults, end to end:
#   synthetic shop -> Airflow retrain DAG (validate -> graph -> train -> evaluate
#   -> export -> deploy) -> a running recommendation server that answers.
# The server keeps running after the script (stop it with: kill "$(cat runs/serve.pid)").
set -euo pipefail
cd "$(dirname "$0")/.."

DATE=${DEMO_DATE:-2026-11-27}
PORT=${DEMO_PORT:-8000}
export RECSYS_LAKE=${RECSYS_LAKE:-$PWD/lake}
export RECSYS_REGISTRY=${RECSYS_REGISTRY:-$PWD/registry}
export RECSYS_API_KEY=${RECSYS_API_KEY:-demo-key}
export RECSYS_SERVE_URL="http://127.0.0.1:$PORT"
R=.venv/bin/recsys
mkdir -p runs

echo "==> 1/4 a synthetic shop in $RECSYS_LAKE"
$R synth --out "$RECSYS_LAKE" --users 3000 --items 600 --days 14 --end-date "$DATE" --seed 1

echo "==> 2/4 the recommendation server on port $PORT (serves what $RECSYS_REGISTRY names)"
if [ -f runs/serve.pid ] && kill -0 "$(cat runs/serve.pid)" 2>/dev/null; then
    kill "$(cat runs/serve.pid)"; sleep 1
fi
nohup $R serve --registry "$RECSYS_REGISTRY" --host 127.0.0.1 --port "$PORT" \
    --event-log "$PWD/serving-events" > runs/serve.log 2>&1 &
echo $! > runs/serve.pid
for _ in $(seq 60); do curl -fs "$RECSYS_SERVE_URL/healthz" >/dev/null && break; sleep 1; done

echo "==> 3/4 the retrain DAG for $DATE (airflow dags test; logs in .airflow/)"
# shellcheck source=scripts/airflow_env.sh
source scripts/airflow_env.sh
airflow dags test recsys_retrain "$DATE" > runs/dag-test.log 2>&1 \
    || { tail -40 runs/dag-test.log; echo "the DAG run failed: see runs/dag-test.log" >&2; exit 1; }
grep -E "Marking run|state=|GateFailed" runs/dag-test.log | tail -5 || true

echo "==> 4/4 a real query"
user=$(.venv/bin/python -c "
import pyarrow.parquet as pq, glob
f = sorted(glob.glob('$RECSYS_LAKE/events/dt=$DATE/*.parquet'))[0]
print(pq.read_table(f, columns=['user_id']).column(0)[0])")
curl -fsS "$RECSYS_SERVE_URL/v1/recommendations/$user?k=5" | .venv/bin/python -m json.tool
echo
echo "The server is still running at $RECSYS_SERVE_URL (pid $(cat runs/serve.pid), log runs/serve.log)."
echo "Try: curl '$RECSYS_SERVE_URL/v1/recommendations/$user?k=10'"
echo "     curl -X POST -H 'X-API-Key: $RECSYS_API_KEY' -H 'content-type: application/json' \\"
echo "          -d '{\"user_id\": \"$user\", \"item_id\": \"<an item id>\", \"event_type\": \"purchase\"}' $RECSYS_SERVE_URL/v1/events"
echo "Open the Airflow UI: source scripts/airflow_env.sh && airflow standalone  (http://localhost:8080)"
