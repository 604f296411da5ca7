"""Root fixtures: the Azurite emulator (a real Azure Blob endpoint on loopback) and generic helpers.

Tests that touch ``abfs://`` ask for ``abfs_lake`` and are marked ``@pytest.mark.azurite``.
Azurite is installed by ``scripts/setup.sh`` (npm package ``azurite`` in node_modules).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account and key (public, only valid on the emulator)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def _clear_abfs_cache() -> None:
    # fsspec caches filesystem instances by constructor args, not by environment:
    # a cached client would keep pointing at the previous connection string
    from adlfs import AzureBlobFileSystem

    AzureBlobFileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start Azurite (blob service) for the session; yields its connection string."""
    if not AZURITE.exists():
        if os.environ.get("RECSYS_SKIP_AZURITE") == "1":
            pytest.skip("Azurite not installed and RECSYS_SKIP_AZURITE=1")
        pytest.fail(f"{AZURITE} missing: run scripts/setup.sh (npm install azurite)")
    from azure.storage.blob import BlobServiceClient

    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    log = (location / "azurite.log").open("wb")
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    conn = connection_string(port)
    try:
        client = BlobServiceClient.from_connection_string(conn)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Azurite exited with {proc.returncode}; see {location}/azurite.log")
            try:
                client.get_service_properties(timeout=2)
                break
            except Exception:  # any failure means "not up yet"
                if time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not answer on port {port} within 60 s")
                time.sleep(0.2)
        yield conn
    finally:
        # Azurite drains keep-alive connections on SIGTERM; its data is throwaway: don't wait
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def abfs_container(azurite: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty container; ``AZURE_STORAGE_CONNECTION_STRING`` points at Azurite."""
    from azure.storage.blob import BlobServiceClient

    name = f"t-{uuid.uuid4().hex[:20]}"
    client = BlobServiceClient.from_connection_string(azurite)
    client.create_container(name)
    for var in (
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    _clear_abfs_cache()
    yield name
    _clear_abfs_cache()
    client.delete_container(name)


@pytest.fixture
def abfs_lake(abfs_container: str) -> str:
    """A lake URI on Azurite: ``abfs://<fresh container>/lake``."""
    return f"abfs://{abfs_container}/lake"


@pytest.fixture
def memory_lake() -> Iterator[str]:
    """A lake URI in fsspec's in-memory filesystem, unique per test and wiped after."""
    import fsspec

    root = f"memory://lake-{uuid.uuid4().hex[:12]}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)
