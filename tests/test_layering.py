"""The layering contracts (pyproject's ``[tool.importlinter]``, run by ``lint-imports`` in
``make test``) hold on the tree and catch a deliberate violation, function-level included.

By hand: put ``def f(): import torch`` into any module of ``recsys/serving`` and run
``.venv/bin/lint-imports``: it exits 1 naming the contract and the line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

VIOLATIONS = {
    "serving/_violation.py": "def f() -> None:\n    import torch  # noqa: F401\n",
    "graph/_violation.py": "def f() -> None:\n    from airflow.sdk import dag  # noqa: F401\n",
    "models/_violation.py": "import fsspec  # noqa: F401\n",
}


def _lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_hold_on_the_tree() -> None:
    r = _lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_a_deliberate_violation_breaks_its_contract(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "recsys", tmp_path / "recsys", ignore=shutil.ignore_patterns("__pycache__")
    )
    for rel, code in VIOLATIONS.items():
        (tmp_path / "recsys" / rel).write_text(code)
    r = _lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "recsys.serving._violation -> torch" in out
    assert "recsys.graph._violation -> airflow" in out
    assert "recsys.models._violation -> fsspec" in out
    assert "3 broken" in out
