"""A small synthetic lake, copied per test, and helpers to corrupt one partition of it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import SCHEMAS

END = dt.date(2026, 11, 27)
DAYS = 4
FIRST = END - dt.timedelta(days=DAYS - 1)


@pytest.fixture(scope="session")
def synth_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "lake"
    generate(SynthConfig(users=300, items=80, days=DAYS, end_date=END, seed=7), str(out))
    return out


@pytest.fixture
def lake(synth_lake: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "lake"
    shutil.copytree(synth_lake, dst)
    return dst


def rewrite(
    lake: Path, table: str, fn: Callable[[pd.DataFrame], pd.DataFrame], day: dt.date = END,
    keep_schema: bool = True,
) -> None:  # fmt: skip
    """Rewrite one partition through pandas; ``keep_schema`` casts back to the contract types."""
    df = fn(read_partition(str(lake), table, day).to_pandas())
    if keep_schema:
        schema = pa.schema([f.with_nullable(True) for f in SCHEMAS[table]])
        data = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    else:
        data = pa.Table.from_pandas(df, preserve_index=False)
    write_partition(str(lake), table, day, data)


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Callable[..., CliRun]]:
    """Run ``recsys ...`` in-process through ``recsys.cli.main`` (the real exit-code mapping)."""
    from recsys.cli import main

    def run(*args: str, docs: bool = False) -> CliRun:
        argv = ["recsys", *args]
        if args and args[0] == "validate" and not docs and "--config" not in args:
            # Data Docs rendering is the slow part; the corpus only needs the verdict
            cfg = tmp_path / "no-docs.json"
            cfg.write_text(json.dumps({"data_docs": False}))
            argv += ["--config", str(cfg)]
        monkeypatch.setattr(sys, "argv", argv)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        code = exc.value.code
        return CliRun(int(code) if isinstance(code, int) else 1, captured.out, captured.err)

    yield run
