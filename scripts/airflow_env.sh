#!/usr/bin/env bash
# Source me: `source scripts/airflow_env.sh` (or run a command: `scripts/airflow_env.sh airflow dags list`).
# A project-local Airflow: AIRFLOW_HOME=./.airflow with SQLite, this repo's dags/ and plugins/,
# no examples; the metadata DB is created or upgraded when needed.
_recsys_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$_recsys_root/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$_recsys_root/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$_recsys_root/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
# the deferrable sensor and the Azure ML operator wait in the triggerer
export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True
export RECSYS_LAKE="${RECSYS_LAKE:-$_recsys_root/lake}"
export RECSYS_REGISTRY="${RECSYS_REGISTRY:-$_recsys_root/registry}"
export PATH="$_recsys_root/.venv/bin:$PATH"
mkdir -p "$AIRFLOW_HOME"
# The schema stamp changes with the Airflow version: migrate when it differs (or no DB yet).
_recsys_stamp="$AIRFLOW_HOME/.migrated-$(python -c "import importlib.metadata as m; print(m.version('apache-airflow'))")"
if [ ! -f "$_recsys_stamp" ]; then
    airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
        || { echo "airflow db migrate failed: see $AIRFLOW_HOME/db-migrate.log" >&2; return 1 2>/dev/null || exit 1; }
    rm -f "$AIRFLOW_HOME"/.migrated-* && touch "$_recsys_stamp"
fi
unset _recsys_root _recsys_stamp
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "$#" -gt 0 ]; then
    exec "$@"
fi
