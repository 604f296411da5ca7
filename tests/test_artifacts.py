"""Artifacts are published whole or not at all, and their manifests are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.artifacts import (
    MANIFEST,
    InputRef,
    manifest_sha256,
    read_manifest,
    verify_artifact,
    write_artifact,
)
from recsys.errors import InputError
from recsys.storage import get_fs, join, read_bytes, write_bytes_atomic


@pytest.fixture(params=["local", "memory", pytest.param("abfs", marks=pytest.mark.azurite)])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path)
    name = "memory_lake" if request.param == "memory" else "abfs_lake"
    uri: str = request.getfixturevalue(name)
    return uri


def _write(uri: str, payload: bytes, fail: bool = False) -> None:
    with write_artifact(uri, "test-kind") as draft:
        write_bytes_atomic(draft.path("data.bin"), payload)
        write_bytes_atomic(draft.path("sub/notes.txt"), b"notes")
        draft.inputs["events"] = InputRef(uri="lake/events/dt=2026-11-27", sha256="ab" * 32)
        draft.counts["rows"] = len(payload)
        draft.config["k"] = 3
        if fail:
            raise RuntimeError("writer crashed half-way")


def _siblings(root: str) -> list[str]:
    fs, path = get_fs(root)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def test_failed_write_keeps_the_previous_artifact(root: str) -> None:
    uri = join(root, "art")
    _write(uri, b"version 1")
    before = manifest_sha256(uri)
    with pytest.raises(RuntimeError, match="half-way"):
        _write(uri, b"version 2, never published", fail=True)
    assert read_bytes(join(uri, "data.bin")) == b"version 1"
    assert manifest_sha256(uri) == before
    verify_artifact(uri)
    assert _siblings(root) == ["art"]  # no staging folder left behind
    _write(uri, b"version 3")
    assert read_bytes(join(uri, "data.bin")) == b"version 3"
    assert read_manifest(uri).counts["rows"] == 9


def test_failed_first_write_leaves_nothing(root: str) -> None:
    uri = join(root, "fresh")
    with pytest.raises(RuntimeError):
        _write(uri, b"x", fail=True)
    fs, path = get_fs(uri)
    assert not fs.exists(path)
    if fs.exists(get_fs(root)[1]):
        assert _siblings(root) == []  # the staging folder is gone too
    with pytest.raises(InputError, match="not a published artifact"):
        read_manifest(uri)


def test_manifest_is_deterministic_and_complete(root: str) -> None:
    a, b = join(root, "a"), join(root, "b")
    _write(a, b"same")
    _write(b, b"same")
    assert manifest_sha256(a) == manifest_sha256(b)
    m = read_manifest(a)
    assert m.kind == "test-kind" and m.schema_version == 1
    assert set(m.files) == {"data.bin", "sub/notes.txt"}
    assert m.files["data.bin"].bytes == 4
    assert m.inputs["events"].sha256 == "ab" * 32 and m.config == {"k": 3}
    _write(b, b"different")
    assert manifest_sha256(a) != manifest_sha256(b)


def test_verify_detects_tampering(root: str) -> None:
    uri = join(root, "art")
    _write(uri, b"payload")
    write_bytes_atomic(join(uri, "data.bin"), b"tampered")
    with pytest.raises(InputError, match=r"data\.bin does not match its sha256"):
        verify_artifact(uri)
    fs, path = get_fs(uri)
    fs.rm(f"{path}/sub/notes.txt")
    write_bytes_atomic(join(uri, "data.bin"), b"payload")
    with pytest.raises(InputError, match=r"sub/notes\.txt listed in the manifest is missing"):
        verify_artifact(uri)
    assert fs.exists(f"{path}/{MANIFEST}")
