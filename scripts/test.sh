#!/usr/bin/env bash
# The test suite in three pytest processes (make test): two shards side by side, then the
# rolling-update rehearsal alone.
#
# Why: most of the suite waits on child processes (Spark's JVM, Airflow task runs, real
# servers, Redis, Chromium), so two shards on the 2-core machine take a little more than
# the longer one instead of the sum. The rehearsal (tests/deploy) runs `wrk` at full load
# against pods with probe deadlines: it runs alone, as it would be measured.
#
# Each process has its own Airflow home (tests/airflow_sandbox.py, by pid) and its own
# MLflow store; ports are free ports picked at run time. Extra arguments go to every pytest.
# RECSYS_TEST_SERIAL=1 runs the suite in one process instead.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if [ "${RECSYS_TEST_SERIAL:-0}" = "1" ]; then
    exec "$PY" -m pytest -q "$@"
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/recsys-tests-XXXXXX")
trap 'rm -rf "$logs"' EXIT
# the DAG and Spark tests (Airflow task runs, Spark JVMs) ...
shard_a=(tests/dags tests/spark)
# ... beside everything else but the rehearsal
shard_b=(tests --ignore=tests/deploy)
for path in "${shard_a[@]}"; do shard_b+=(--ignore="$path"); done

run_shard() {  # name, pytest args...
    local name=$1
    shift
    MLFLOW_TRACKING_URI="sqlite:///$logs/$name-mlflow.db" "$PY" -m pytest -q -p no:cacheprovider \
        "$@" >"$logs/$name.log" 2>&1
}

start=$SECONDS
run_shard a "${shard_a[@]}" "$@" &
pid_a=$!
run_shard b "${shard_b[@]}" "$@" &
pid_b=$!
wait "$pid_a"
rc_a=$?
wait "$pid_b"
rc_b=$?
for name in a b; do
    echo "==> shard $name ($([ "$name" = a ] && echo "${shard_a[*]}" || echo "the rest but tests/deploy"))"
    cat "$logs/$name.log"
done
echo "==> shards a and b took $((SECONDS - start)) s"

echo "==> tests/deploy (alone: the rehearsal measures under load)"
"$PY" -m pytest -q tests/deploy "$@"
rc_c=$?

if [ $rc_a -ne 0 ] || [ $rc_b -ne 0 ] || [ $rc_c -ne 0 ]; then
    echo "test: failed (shard a: $rc_a, shard b: $rc_b, tests/deploy: $rc_c)" >&2
    exit 1
fi
echo "==> all tests passed in $((SECONDS - start)) s"
