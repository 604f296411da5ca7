"""Artifacts: folders with a ``manifest.json``, published atomically.

Every artifact of the lineage (validation report, graph snapshot, model run,
ONNX bundle, deployment) is a folder whose ``manifest.json`` records the
schema version, the inputs with their content hashes, counts, the config and
the sha256 of each file. The manifest holds no wall-clock time, so the same
inputs give the same manifest.

Each artifact format lives in one module that owns both its writer and its
reader (the graph snapshot in :mod:`recsys.graph.snapshot`, the model in
:mod:`recsys.training.artifact`, the bundle in :mod:`recsys.bundle`, the
reports in :mod:`recsys.reports`); they all write through :class:`ArtifactDraft`
and read through the helpers here, so a file is encoded one way wherever it is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from recsys import __version__
from recsys.errors import InputError
from recsys.storage import (
    get_fs,
    join,
    list_files,
    publish_dir,
    read_bytes,
    sha256_file,
    staged_dir,
)

if TYPE_CHECKING:
    # imported where a file is encoded: Airflow imports this module when it parses a DAG
    import numpy as np
    import pandas as pd
    import pyarrow as pa

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class InputRef(BaseModel):
    uri: str
    sha256: str
    """Content hash of the input: its manifest's hash, or a hash of its files."""


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str
    recsys_version: str = __version__
    inputs: dict[str, InputRef] = Field(default_factory=dict)
    counts: dict[str, int | float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


@dataclass
class ArtifactDraft:
    """An artifact being written: put files under :attr:`uri`, fill the manifest fields."""

    uri: str
    kind: str
    inputs: dict[str, InputRef] = field(default_factory=dict)
    counts: dict[str, int | float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return join(self.uri, name)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write the file ``name`` (a path relative to the artifact, sub-folders allowed)."""
        fs, path = get_fs(self.path(name))
        if "/" in name:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json_bytes(obj))

    def write_parquet(
        self, name: str, data: pa.Table | pd.DataFrame, compression: str = "zstd"
    ) -> None:
        """A Parquet file; a DataFrame is written without its index (as ``to_parquet`` does)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression=compression)
        self.write_bytes(name, buf.getvalue())

    def write_npy(self, name: str, array: np.ndarray) -> None:
        """A ``.npy`` file, C-contiguous, readable with ``allow_pickle=False``."""
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self.write_bytes(name, buf.getvalue())

    def copy_tree(self, name: str, local_dir: Path) -> None:
        """Every file under the local folder ``local_dir``, into the folder ``name``."""
        for local in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.write_bytes(
                f"{name}/{local.relative_to(local_dir).as_posix()}", local.read_bytes()
            )


def _plain(obj: Any) -> Any:
    # numpy scalars and other numbers become floats; anything else (dates, paths) its text
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


def json_bytes(obj: Any) -> bytes:
    """The one JSON encoding of artifact files: sorted keys, indented, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n").encode("utf-8")


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def read_parquet(uri: str) -> pd.DataFrame:
    """A Parquet file as a DataFrame; a missing file is an :class:`InputError` naming it."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(read_bytes(uri))).to_pandas()


def read_npy(uri: str) -> np.ndarray:
    import numpy as np

    arr: np.ndarray = np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)
    return arr


@contextmanager
def write_artifact(final_uri: str, kind: str) -> Iterator[ArtifactDraft]:
    """Write an artifact into a staging folder and publish it when the block ends.

    If the block raises, nothing is published and any previous artifact at
    ``final_uri`` is left as it was.
    """
    with staged_dir(final_uri) as staged:
        draft = ArtifactDraft(uri=staged, kind=kind)
        yield draft
        fs, root = get_fs(staged)
        files = {
            rel: FileEntry(
                sha256=sha256_file(fs, f"{root}/{rel}"), bytes=int(fs.size(f"{root}/{rel}"))
            )
            for rel in list_files(fs, root)
            if rel != MANIFEST
        }
        manifest = Manifest(
            kind=kind,
            inputs=draft.inputs,
            counts=draft.counts,
            config=draft.config,
            extra=draft.extra,
            files=files,
        )
        draft.write_text(MANIFEST, manifest.to_json())
        publish_dir(staged, final_uri, MANIFEST)


def read_manifest(uri: str) -> Manifest:
    """The manifest of the artifact at ``uri``; an error if it is not a published artifact."""
    fs, root = get_fs(uri)
    path = f"{root}/{MANIFEST}"
    if not fs.exists(path):
        raise InputError(f"{uri}: not a published artifact (no {MANIFEST})")
    with fs.open(path, "r") as f:
        return Manifest.model_validate_json(f.read())


def manifest_sha256(uri: str) -> str:
    """Content hash of an artifact: the sha256 of its manifest (which lists each file's hash)."""
    import hashlib

    fs, root = get_fs(uri)
    with fs.open(f"{root}/{MANIFEST}", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def verify_artifact(uri: str) -> Manifest:
    """Check every file's checksum against the manifest; raise naming the first bad file."""
    manifest = read_manifest(uri)
    fs, root = get_fs(uri)
    for rel, entry in manifest.files.items():
        path = f"{root}/{rel}"
        if not fs.exists(path):
            raise InputError(f"{uri}: {rel} listed in the manifest is missing")
        if sha256_file(fs, path) != entry.sha256:
            raise InputError(f"{uri}: {rel} does not match its sha256 in the manifest")
    return manifest
