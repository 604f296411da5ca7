from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recsys.training.config import TrackingConfig
from recsys.training.tracking import Tracker, start_tracking


def test_disabled_tracking_never_imports_mlflow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from recsys.training.config import TrainConfig, TrackingConfig\n"
        "from recsys.training.data import InteractionData\n"
        "from recsys.training.loop import train\n"
        "from recsys.training.tracking import start_tracking\n"
        "rng = np.random.default_rng(0)\n"
        "d = InteractionData(30, 20, rng.integers(0, 30, 200), rng.integers(0, 20, 200),\n"
        "                    np.ones(200, np.float32))\n"
        "cfg = TrainConfig(epochs=2, progress=False, tracking=TrackingConfig(enabled=False))\n"
        "with start_tracking(cfg.tracking) as t:\n"
        "    train(d, cfg, tracker=t)\n"
        "assert 'mlflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mlflow_tracking_uri_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    with start_tracking(TrackingConfig(experiment="t")) as t:
        assert type(t) is not Tracker and t.run_id
        t.log_params({"a": {"b": 1}})
        t.log_metrics({"val_recall@20": 0.5}, step=1)
    import mlflow

    run = mlflow.get_run(t.run_id)
    assert run.data.params["a.b"] == "1"
    assert run.data.metrics["val_recall_at_20"] == 0.5
    assert db.exists() and not (tmp_path / "mlruns").exists()
