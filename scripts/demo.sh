#!/usr/bin/env bash
# The main job on embedded defaults, end to end:
#   synthetic shop -> Airflow retrain DAG (validate -> graph -> train -> evaluate
#   -> export -> deploy) -> a running recommendation server that answers.
# The servers keep running after the script (stop them with: bash scripts/demo.sh stop).
#
#   make demo              one replica, embedded live store (in-process + a local durable log)
#   make demo-replicas     DEMO_REPLICAS=2 DEMO_LIVE_STORE=redis: two replicas sharing a real
#                          redis-server, behind nginx on DEMO_PORT (what production runs)
set -euo pipefail
cd "$(dirname "$0")/.."

DATE=${DEMO_DATE:-2026-11-27}
PORT=${DEMO_PORT:-8000}
REPLICAS=${DEMO_REPLICAS:-1}
LIVE=${DEMO_LIVE_STORE:-memory}
REDIS_PORT=${DEMO_REDIS_PORT:-6390}
export RECSYS_LAKE=${RECSYS_LAKE:-$PWD/lake}
export RECSYS_REGISTRY=${RECSYS_REGISTRY:-$PWD/registry}
export RECSYS_API_KEY=${RECSYS_API_KEY:-demo-key}
export RECSYS_SERVE_URL="http://127.0.0.1:$PORT"
R=.venv/bin/recsys
mkdir -p runs

stop_all() {
    for f in runs/serve*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    [ -f runs/nginx/nginx.pid ] && nginx -p "$PWD/runs/nginx" -c nginx.conf -s quit 2>/dev/null || true
    [ -f runs/redis.pid ] && kill "$(cat runs/redis.pid)" 2>/dev/null || true
    rm -f runs/redis.pid
    sleep 1
}
if [ "${1:-}" = "stop" ]; then stop_all; echo "stopped"; exit 0; fi
case "$LIVE" in memory|redis) ;; *) echo "DEMO_LIVE_STORE: memory or redis, not $LIVE" >&2; exit 2;; esac
if [ "$REPLICAS" -gt 1 ] && [ "$LIVE" = memory ]; then
    echo "DEMO_REPLICAS=$REPLICAS needs DEMO_LIVE_STORE=redis: each memory replica would keep" \
         "its users' events to itself" >&2
    exit 2
fi

echo "==> 1/4 a synthetic shop in $RECSYS_LAKE"
$R synth --out "$RECSYS_LAKE" --users 3000 --items 600 --days 14 --end-date "$DATE" --seed 1

stop_all
if [ "$LIVE" = redis ]; then
    echo "==> the live store: redis-server on 127.0.0.1:$REDIS_PORT (AOF on, data in runs/redis)"
    mkdir -p runs/redis
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/runs/redis" --appendonly yes \
        --appendfsync everysec --save "" --daemonize yes --pidfile "$PWD/runs/redis.pid" \
        --logfile "$PWD/runs/redis/redis.log"
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    export RECSYS_LIVE_STORE="redis://127.0.0.1:$REDIS_PORT/0"
else
    export RECSYS_LIVE_STORE=memory
fi

replica_urls=()
if [ "$REPLICAS" -eq 1 ]; then
    ports=("$PORT")
else
    ports=()
    for i in $(seq 1 "$REPLICAS"); do ports+=($((PORT + i))); done
fi
echo "==> 2/4 $REPLICAS recommendation server(s) on port(s) ${ports[*]}" \
     "(live store: $LIVE; serving what $RECSYS_REGISTRY names)"
for i in "${!ports[@]}"; do
    p=${ports[$i]}
    suffix=$([ "$REPLICAS" -eq 1 ] && echo "" || echo "-$((i + 1))")
    nohup $R serve --registry "$RECSYS_REGISTRY" --host 127.0.0.1 --port "$p" \
        --event-log "$PWD/serving-events" > "runs/serve$suffix.log" 2>&1 &
    echo $! > "runs/serve$suffix.pid"
    replica_urls+=("http://127.0.0.1:$p")
done
if [ "$REPLICAS" -gt 1 ]; then
    echo "==> nginx on port $PORT in front of the replicas (the Service of the chart)"
    mkdir -p runs/nginx/logs
    {
        echo "pid $PWD/runs/nginx/nginx.pid; error_log $PWD/runs/nginx/logs/error.log;"
        echo "events {} http { access_log off; upstream recsys {"
        for p in "${ports[@]}"; do echo "  server 127.0.0.1:$p max_fails=0;"; done
        echo "  keepalive 32; }"
        echo "  server { listen 127.0.0.1:$PORT; location / { proxy_pass http://recsys;"
        echo "    proxy_http_version 1.1; proxy_set_header Connection \"\";"
        echo "    proxy_next_upstream error timeout; } } }"
    } > runs/nginx/nginx.conf
    nginx -p "$PWD/runs/nginx" -c nginx.conf
fi
for u in "${replica_urls[@]}" "$RECSYS_SERVE_URL"; do
    for _ in $(seq 60); do curl -fs "$u/healthz" >/dev/null && break; sleep 1; done
done

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
if [ "$REPLICAS" -gt 1 ]; then
    a=${replica_urls[0]}; b=${replica_urls[1]}
    top=$(curl -fsS "$b/v1/recommendations/$user?k=5" | .venv/bin/python -c \
        "import json,sys; print(json.load(sys.stdin)['items'][0]['item_id'])")
    echo "==> real time across replicas: $user buys $top on replica $a ..."
    curl -fsS -X POST -H "X-API-Key: $RECSYS_API_KEY" -H 'content-type: application/json' \
        -d "{\"user_id\": \"$user\", \"item_id\": \"$top\", \"event_type\": \"purchase\"}" \
        "$a/v1/events" >/dev/null
    after=$(curl -fsS "$b/v1/recommendations/$user?k=5" | .venv/bin/python -c \
        "import json,sys; print(' '.join(i['item_id'] for i in json.load(sys.stdin)['items']))")
    echo "    ... and replica $b's very next answer: $after (no $top)"
fi
echo
echo "Serving at $RECSYS_SERVE_URL ($REPLICAS replica(s), live store $LIVE; logs runs/serve*.log)."
echo "Stop everything: bash scripts/demo.sh stop"
echo "Try: curl '$RECSYS_SERVE_URL/v1/recommendations/$user?k=10'"
echo "     curl -X POST -H 'X-API-Key: $RECSYS_API_KEY' -H 'content-type: application/json' \\"
echo "          -d '{\"user_id\": \"$user\", \"item_id\": \"<an item id>\", \"event_type\": \"purchase\"}' $RECSYS_SERVE_URL/v1/events"
echo "Open the Airflow UI: source scripts/airflow_env.sh && airflow standalone  (http://localhost:8080)"
echo "Operations view (model, lineage, served health, rollback): $RECSYS_SERVE_URL/ui/ops"
echo "API key for clicks and rollback in the pages: $RECSYS_API_KEY"
echo
echo "Storefront: $RECSYS_SERVE_URL/ui/?user=$user"
