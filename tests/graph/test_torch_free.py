from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import recsys.graph.build, recsys.graph.snapshot, recsys.graph.features, recsys.graph.gate
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'airflow'))
assert not bad, bad
"""


def test_graph_package_never_imports_torch() -> None:
    # the serving image loads snapshots and feature specs without torch installed
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
