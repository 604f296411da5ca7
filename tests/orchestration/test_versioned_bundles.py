"""Bundles live in immutable folders named by their version, so rollback always finds them."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from recsys.artifacts import manifest_sha256, verify_artifact, write_artifact
from recsys.orchestration import tasks
from recsys.orchestration.config import DeployConfig, RetrainConfig
from recsys.orchestration.deploy import deploy_bundle, get_backend
from recsys.serving import registry

DAY = dt.date(2026, 11, 27)


def _train(uri: str, weights: str) -> None:
    """A stand-in model artifact: only its manifest hash matters to the export task."""
    with write_artifact(uri, "model") as draft:
        Path(draft.path("weights.txt")).write_text(weights)


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``recsys export`` replaced by a writer whose every bundle differs (like real latencies)."""
    outs: list[str] = []
    run = itertools.count()

    def fake_cli(
        args: list[str], env: dict[str, str] | None = None, report: str | None = None
    ) -> str:
        assert args[0] == "export"
        out, version = args[args.index("--out") + 1], args[args.index("--version") + 1]
        with write_artifact(out, "bundle") as draft:
            Path(draft.path("latency.txt")).write_text(f"p99 run {next(run)}")
            draft.config = {"version": version}
        outs.append(out)
        return ""

    monkeypatch.setattr(tasks, "run_cli", fake_cli)
    return outs


def test_two_models_get_two_folders_and_rollback_reaches_the_first(
    tmp_path: Path, exports: list[str]
) -> None:
    cfg = RetrainConfig(lake=str(tmp_path / "lake"), registry=str(tmp_path / "registry"))
    paths = tasks.plan(DAY, None, cfg)
    backend = get_backend("local", cfg.resolved_registry(), DeployConfig())

    _train(paths["model"], "model A")
    first = tasks.export(paths, cfg)
    assert first["version"] == f"20261127-{manifest_sha256(paths['model'])[:12]}"
    assert first["bundle"] == str(tmp_path / "lake" / "bundles" / first["version"])
    assert first["reused"] is False
    deploy_bundle(backend, first["bundle"], first["version"], None)
    pinned = registry.current(cfg.resolved_registry())
    assert pinned is not None

    # same day, same model: same version, and the served folder is not rewritten
    again = tasks.export(paths, cfg)
    assert (again["version"], again["bundle"], again["reused"]) == (
        first["version"],
        first["bundle"],
        True,
    )
    assert exports[-1] != first["bundle"]  # the gate re-ran on a throw-away copy
    assert manifest_sha256(first["bundle"]) == pinned.manifest_sha256

    # same day rerun with a different model (deploy off): a new folder beside the served one
    _train(paths["model"], "model B")
    second = tasks.export(paths, cfg)
    assert second["version"] != first["version"] and second["reused"] is False
    bundles = sorted(p.name for p in (tmp_path / "lake" / "bundles").iterdir())
    assert bundles == sorted([first["version"], second["version"]])
    assert manifest_sha256(first["bundle"]) == pinned.manifest_sha256
    verify_artifact(first["bundle"])

    # deploy the second, then roll back: the first folder is still there, intact and pinned
    deploy_bundle(backend, second["bundle"], second["version"], None)
    backend.rollback(first["version"])
    entry = registry.current(cfg.resolved_registry())
    assert entry is not None and entry.version == first["version"]
    assert entry.bundle_uri == first["bundle"]
    verify_artifact(entry.bundle_uri)
    assert manifest_sha256(entry.bundle_uri) == entry.manifest_sha256


def test_a_damaged_bundle_of_the_same_version_is_exported_again(
    tmp_path: Path, exports: list[str]
) -> None:
    cfg = RetrainConfig(lake=str(tmp_path / "lake"), registry=str(tmp_path / "registry"))
    paths = tasks.plan(DAY, None, cfg)
    _train(paths["model"], "model A")
    first = tasks.export(paths, cfg)
    (Path(first["bundle"]) / "latency.txt").write_text("bit rot")
    again = tasks.export(paths, cfg)
    assert again["reused"] is False and exports[-1] == first["bundle"]
    verify_artifact(again["bundle"])


def test_rollback_refuses_a_bundle_that_is_gone_or_changed(
    tmp_path: Path, exports: list[str]
) -> None:
    import shutil

    from recsys.errors import InputError

    cfg = RetrainConfig(lake=str(tmp_path / "lake"), registry=str(tmp_path / "registry"))
    reg = cfg.resolved_registry()
    paths = tasks.plan(DAY, None, cfg)
    versions = []
    for weights in ("model A", "model B"):
        _train(paths["model"], weights)
        out = tasks.export(paths, cfg)
        registry.publish(reg, out["bundle"], out["version"])
        versions.append(out)
    first = Path(versions[0]["bundle"])
    with write_artifact(str(first), "bundle") as draft:  # re-exported over the served folder
        Path(draft.path("latency.txt")).write_text("another export")
    with pytest.raises(InputError, match="no longer the bundle that was published"):
        registry.rollback(reg)
    shutil.rmtree(first)
    with pytest.raises(InputError, match="is gone"):
        registry.rollback(reg)
    entry = registry.current(reg)
    assert entry is not None and entry.version == versions[1]["version"]  # pointer untouched
