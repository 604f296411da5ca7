"""Hot reload from the registry: swap under load, refuse a corrupt bundle, roll back."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from srv_helpers import API_KEY, make_bundle, start_server, stop_server

from recsys.errors import InputError
from recsys.serving import registry

H = {"X-API-Key": API_KEY}


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_reload_refuse_and_rollback(tmp_path: Path) -> None:
    reg = str(tmp_path / "registry")
    b1 = make_bundle(str(tmp_path / "b1"), "v1", seed=1)
    b2 = make_bundle(str(tmp_path / "b2"), "v2", seed=2)
    registry.publish(reg, b1)
    s = start_server(tmp_path, "--registry", reg)
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()
    started = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=s.url, timeout=10.0) as c:
            while not stop.is_set():
                r = c.get("/v1/recommendations/u1", params={"k": 5})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    versions.add(r.json()["model_version"])
                    started.set()

    try:
        with s.client() as c:

            def version() -> str:
                return str(c.get("/readyz").json()["model_version"])

            assert version() == "v1"
            # a new user's live event must survive the swap (replayed onto the new bundle)
            c.post(
                "/v1/events",
                headers=H,
                json={"user_id": "walk-in", "item_id": "i3", "event_type": "purchase"},
            )
            t = threading.Thread(target=load)
            t.start()
            assert started.wait(20)  # the load is running on v1 before the swap
            registry.publish(reg, b2)
            _wait(lambda: version() == "v2")
            time.sleep(0.3)
            stop.set()
            t.join()
            assert not failures and versions == {"v1", "v2"}
            walk_in = c.get("/v1/recommendations/walk-in", params={"k": 3}).json()
            assert walk_in["model_version"] == "v2" and walk_in["source"] == "events"

            # corrupt bundle: a file no longer matches its checksum -> refused, v2 keeps serving
            b3 = tmp_path / "b3"
            shutil.copytree(b2, b3)
            scorer = b3 / "scorer.onnx"
            scorer.write_bytes(scorer.read_bytes()[:-100])
            with pytest.raises(InputError, match=r"scorer\.onnx"):
                registry.publish(reg, str(b3), "v3")  # publish verifies by default
            registry.publish(reg, str(b3), "v3", verify=False)
            _wait(lambda: c.get("/v1/model").json()["last_error"] is not None)
            assert version() == "v2"
            assert "scorer.onnx" in c.get("/v1/model").json()["last_error"]
            assert c.get("/v1/recommendations/u1").status_code == 200
            assert 'recsys_bundle_reloads_total{outcome="refused"} 1.0' in c.get("/metrics").text

            # rollback: the registry goes back to v2 (already active), then to v1 (in memory)
            r = c.post("/v1/admin/rollback", headers=H)
            assert r.status_code == 200 and r.json()["model_version"] == "v2"
            r = c.post("/v1/admin/rollback", headers=H)
            assert r.status_code == 200 and r.json()["model_version"] == "v1"
            assert registry.current(reg).version == "v1"  # type: ignore[union-attr]
            assert c.post("/v1/admin/rollback", headers=H).status_code == 409
    finally:
        stop.set()
        stop_server(s)


def test_bundle_mode_admin_reload_refuses_bad_uri(tmp_path: Path) -> None:
    b1 = make_bundle(str(tmp_path / "b1"), "v1", seed=1)
    b2 = make_bundle(str(tmp_path / "b2"), "v2", seed=2)
    s = start_server(tmp_path, "--bundle", b1)
    try:
        with s.client() as c:
            r = c.post("/v1/admin/reload", headers=H, json={"bundle_uri": str(tmp_path / "none")})
            assert r.status_code == 422 and "refused" in r.text
            assert c.get("/readyz").json()["model_version"] == "v1"
            r = c.post("/v1/admin/reload", headers=H, json={"bundle_uri": b2})
            assert r.status_code == 200 and r.json()["model_version"] == "v2"
            r = c.post("/v1/admin/rollback", headers=H)
            assert r.json()["model_version"] == "v1"
    finally:
        stop_server(s)


def test_registry_publish_and_rollback(tmp_path: Path) -> None:
    reg = str(tmp_path / "reg")
    b1 = make_bundle(str(tmp_path / "b1"), "v1", seed=1)
    assert registry.current(reg) is None
    e = registry.publish(reg, b1)
    assert e.version == "v1" and Path(e.bundle_uri).is_absolute()
    registry.publish(reg, b1, "v1b")
    assert registry.rollback(reg).version == "v1"
    try:
        registry.rollback(reg)
    except Exception as exc:
        assert "nothing to roll back" in str(exc)
    else:
        raise AssertionError("rollback with no history must fail")


def test_empty_registry_not_ready_until_published(tmp_path: Path) -> None:
    reg = str(tmp_path / "registry")
    s = start_server(tmp_path, "--registry", reg)
    try:
        with s.client() as c:
            assert c.get("/readyz").status_code == 503
            assert c.get("/v1/recommendations/u1").status_code == 503
            registry.publish(reg, make_bundle(str(tmp_path / "b1"), "v1", seed=1))
            _wait(lambda: c.get("/readyz").status_code == 200)
            assert c.get("/v1/recommendations/u1").json()["model_version"] == "v1"
    finally:
        stop_server(s)
