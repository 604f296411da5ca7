"""``recsys train`` and ``recsys evaluate`` end to end on a synthetic shop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from recsys.artifacts import manifest_sha256, read_manifest, verify_artifact
from recsys.cli import app
from recsys.training.artifact import load_model


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("shop")
    runner = CliRunner()
    lake = str(root / "lake")
    r = runner.invoke(
        app,
        [
            "synth",
            "--out",
            lake,
            "--users",
            "400",
            "--items",
            "120",
            "--days",
            "4",
            "--end-date",
            "2026-11-27",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["build-graph", "--lake", lake, "--as-of", "2026-11-27"])
    assert r.exit_code == 0, r.output
    return f"{lake}/graphs/as_of=2026-11-27"


def test_train_publishes_a_loadable_model_linked_to_its_graph(
    graph: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default MLflow store ./mlruns lands here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tmp_path / "train.json"
    cfg.write_text(
        json.dumps(
            {
                "epochs": 8,
                "eval_every": 2,
                "embedding_dim": 16,
                "batch_size": 256,
                "progress": False,
            }
        )
    )
    out = str(tmp_path / "model")
    r = CliRunner().invoke(app, ["train", "--graph", graph, "--out", out, "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    manifest = verify_artifact(out)
    assert manifest.kind == "model"
    assert manifest.inputs["graph"].uri == graph
    assert manifest.inputs["graph"].sha256 == manifest_sha256(graph)
    for name in ("model.pt", "model.json", "history.json", "metrics.json", "report.html"):
        assert name in manifest.files
    assert not Path(out + ".checkpoint").exists()
    # weights-only state dict
    state = torch.load(Path(out) / "model.pt", weights_only=True)
    assert "user_embedding.weight" in state
    loaded = load_model(out)
    assert loaded.graph_uri == graph and not loaded.model.training
    assert loaded.config.epochs == 8
    history = json.loads((Path(out) / "history.json").read_text())
    assert len(history) == 8 and "val_recall@20" in history[1]
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    assert "recall@20" in metrics["holdout"] and "popularity" in metrics["baselines"]
    assert "<img" in (Path(out) / "report.html").read_text()
    assert list((tmp_path / "mlruns").iterdir())  # the run was tracked in the local store
    assert read_manifest(out).config["embedding_dim"] == 16

    r = CliRunner().invoke(app, ["evaluate", "--model", out, "--graph", graph, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{") :])
    for name in ("gnn", "mf-bpr", "popularity"):
        assert "recall@20" in doc[name] and "ndcg@20" in doc[name], name
    assert 0.0 <= doc["gnn"]["recall@20"] <= 1.0


def test_train_rejects_bad_device_and_missing_graph(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "train",
            "--graph",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "m"),
            "--device",
            "tpu",
        ],
    )
    assert r.exit_code != 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cuda_without_a_cuda_device_is_an_input_error_before_any_write(
    graph: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    from recsys.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m"
    args = ["--graph", graph, "--device", "cuda"]
    args += ["--out", str(out)] if command == "train" else ["--model", str(out)]
    monkeypatch.setattr("sys.argv", ["recsys", command, *args])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert "--device cuda: no CUDA device on this machine" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "mlruns").exists()
    for bad in ("tpu", "cuda:x"):
        monkeypatch.setattr("sys.argv", ["recsys", "train", "--graph", graph, "--out",
                                         str(out), "--device", bad])  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 2


def test_train_resumes_from_the_checkpoint_uri_it_is_given(graph: str, tmp_path: Path) -> None:
    """``--checkpoint`` (the Azure ML job puts it inside its output mount) is where it resumes."""
    from recsys.graph.snapshot import load_snapshot
    from recsys.training.config import TrainConfig
    from recsys.training.data import InteractionData
    from recsys.training.loop import train

    doc = {
        "epochs": 4,
        "eval_every": 2,
        "embedding_dim": 8,
        "batch_size": 256,
        "checkpoint_every": 1,
        "progress": False,
        "tracking": {"enabled": False},
    }
    cfg_file = tmp_path / "train.json"
    cfg_file.write_text(json.dumps(doc))
    ck = str(tmp_path / "mount" / "model.checkpoint")
    # a started run, with another seed so that resuming from it is visible in the history
    started = train(
        InteractionData.from_snapshot(load_snapshot(graph)),
        TrainConfig.model_validate({**doc, "seed": 1}),
        checkpoint_dir=ck,
        max_epochs=2,
    )
    out = tmp_path / "mount" / "model"
    r = CliRunner().invoke(
        app,
        [
            "train",
            "--graph",
            graph,
            "--out",
            str(out),
            "--config",
            str(cfg_file),
            "--checkpoint",
            ck,
        ],
    )
    assert r.exit_code == 0, r.output
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 4
    assert history[:2] == [
        {k: v for k, v in row.items() if k != "elapsed_s"} for row in started.history
    ]
    assert not Path(ck).exists() and not Path(str(out) + ".checkpoint").exists()
