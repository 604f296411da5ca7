"""What the data gate's engines share: a partition as read, its content hash, and the
engine interface (:class:`recsys.validation.gate.LocalEngine` on this machine,
:class:`recsys.validation.spark_gate.SparkEngine` on Spark)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from recsys.reports import Check
from recsys.storage import get_fs, sha256_file
from recsys.validation import cross
from recsys.validation.config import ValidationConfig


@dataclass
class Partition:
    """One partition as read: its table, the day it is from, and which columns are usable."""

    table: str
    day: dt.date
    data: pa.Table | None
    """The rows (local engine); the Spark engine keeps them in ``frame``."""
    files: list[str]
    usable: set[str]
    sha256: str
    """Content hash of the partition's files (the manifest's input hash)."""
    schema: pa.Schema
    rows: int
    frame: Any = None
    """The rows as a Spark DataFrame (Spark engine)."""


def content_hash(files: list[str], digests: dict[str, str] | None = None) -> str:
    """The partition's content hash from its files' sha256 (``digests`` when an engine
    computed them already)."""
    h = hashlib.sha256()
    for uri in files:
        if digests is not None:
            digest = digests[uri]
        else:
            fs, path = get_fs(uri)
            digest = sha256_file(fs, path)
        h.update(f"{uri.rsplit('/', 1)[-1]}:{digest}\n".encode())
    return h.hexdigest()


class Engine(Protocol):
    """Where the gate reads partitions and computes its figures
    (:class:`recsys.validation.gate.LocalEngine`,
    :class:`recsys.validation.spark_gate.SparkEngine`); the checks are the same."""

    name: str
    gx_source: str
    """The GX data source the suites run through: ``pandas`` or ``spark``."""

    def load(self, lake: str, table: str, day: dt.date) -> Partition: ...
    def frame(self, part: Partition) -> Any: ...
    def table(self, df: pd.DataFrame) -> Any: ...
    def unknown_ids(
        self, ev: Partition, col: str, dim: Partition, tol: float, cfg: ValidationConfig
    ) -> cross.Metric: ...
    def duplicate_rate(self, ev: Partition, cfg: ValidationConfig) -> cross.Metric: ...
    def history(self, lake: str, day: dt.date, cfg: ValidationConfig) -> cross.History: ...
    def mix_drift(
        self, ev: Partition, hist: cross.History, cfg: ValidationConfig
    ) -> cross.Metric | Check: ...
