"""The evaluation package runs where torch is absent (serving images, Airflow workers)."""

from __future__ import annotations

import subprocess
import sys


def test_evaluation_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import recsys.evaluation, recsys.evaluation.metrics, recsys.evaluation.ranking\n"
        "import recsys.evaluation.baselines, recsys.evaluation.gate, recsys.evaluation.report\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
