"""Fixtures: real bundles and a real server (uvicorn in a subprocess on a free loopback port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from srv_helpers import Server, make_bundle, start_server, stop_server


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bundles")
    return {
        "v1": make_bundle(str(root / "b1"), "v1", seed=1),
        "v2": make_bundle(str(root / "b2"), "v2", seed=2),
    }


@pytest.fixture(scope="module")
def server(bundles: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("srv"), "--bundle", bundles["v1"])
    yield s
    stop_server(s)
