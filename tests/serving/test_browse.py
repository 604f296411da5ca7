"""What the pages read besides recommendations: shopper search, a shopper's history, product
details, the catalogue; the served model's lineage with its reports; the pages themselves."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from srv_helpers import API_KEY, Server, make_bundle, start_server, stop_server

from recsys.artifacts import InputRef, manifest_sha256, write_artifact
from recsys.reports import VALIDATION, report_uri, write_report
from recsys.serving.lineage import lineage

H = {"X-API-Key": API_KEY}
AS_OF = dt.date(2026, 11, 27)


def test_shopper_search_items_and_catalogue(server: Server, bundles: dict[str, str]) -> None:
    items = pd.read_parquet(f"{bundles['v1']}/items.parquet").set_index("item_id")
    with server.client() as c:
        got = c.get("/v1/users", params={"prefix": "u1", "limit": 4}).json()
        assert got["users"] == ["u1", "u10", "u11", "u12"] and got["total_users"] == 50
        assert c.get("/v1/users", params={"prefix": "zz"}).json()["users"] == []
        assert c.get("/v1/users", params={"limit": 51}).status_code == 422
        got = c.get("/v1/items", params={"ids": "i3,nope,i0"}).json()
        assert [i["item_id"] for i in got["items"]] == ["i3", "i0"]
        assert got["items"][0]["price"] == pytest.approx(items.loc["i3", "price"])
        assert got["items"][0]["category"] == items.loc["i3", "category"]
        assert got["unknown"] == ["nope"]
        many = ",".join(f"i{j}" for j in range(201))
        assert c.get("/v1/items", params={"ids": many}).status_code == 400
        assert c.get("/v1/items", params={"ids": ","}).status_code == 422
        cat = c.get("/v1/catalog").json()
    assert cat["categories"] == [{"name": f"c{j}", "items": 10} for j in range(4)]
    assert {f["name"]: f["kind"] for f in cat["user_features"]} == {
        "age": "numeric",
        "country": "categorical",
    }
    assert cat["segments"] == ["DE", "FR"] and cat["model_version"] == "v1"


def test_history_holds_the_bundle_and_the_live_events(
    server: Server, bundles: dict[str, str]
) -> None:
    h = pd.read_parquet(f"{bundles['v1']}/histories.parquet")
    users = pd.read_parquet(f"{bundles['v1']}/users.parquet")
    u = int(users.index[users["user_id"] == "u7"][0])
    hu = h[h["user_idx"] == u].sort_values("weight", ascending=False, kind="stable")
    with server.client() as c:
        before = c.get("/v1/users/u7/history").json()
        assert before["known"] and before["live"] == [] and before["bundle_total"] == len(hu)
        assert [b["item_id"] for b in before["bundle"]] == [f"i{j}" for j in hu["item_idx"]]
        assert all(b["event_types"] for b in before["bundle"])
        for item, kind in (("i5", "view"), ("i6", "purchase"), ("nope", "click")):
            r = c.post(
                "/v1/events", headers=H, json={"user_id": "u7", "item_id": item, "event_type": kind}
            )
            assert r.status_code == 202
        after = c.get("/v1/users/u7/history", params={"limit": 2}).json()
        assert after["live_total"] == 3
        assert [(e["item_id"], e["event_type"], e["folded"]) for e in after["live"]] == [
            ("nope", "click", False),
            ("i6", "purchase", True),
        ]
        assert len(after["bundle"]) == 2
        stranger = c.get("/v1/users/someone-new/history").json()
        assert not stranger["known"] and stranger["bundle"] == []
        assert c.get("/v1/users/u7/history", params={"limit": 0}).status_code == 422


def test_pages_and_static_files(server: Server) -> None:
    with server.client() as c:
        r = c.get("/ui", follow_redirects=False)
        assert r.status_code in (302, 307) and r.headers["location"] == "/ui/"
        for path, marker in (("/ui/", 'id="cards"'), ("/ui/ops", 'id="lineage"')):
            r = c.get(path)
            assert r.status_code == 200 and marker in r.text
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert API_KEY not in r.text  # the key is typed into the page, never served
        for f in ("store.js", "ops.js", "common.js", "style.css"):
            assert c.get(f"/ui/static/{f}").status_code == 200
        assert c.get("/ui/static/nope.js").status_code == 404
        spec = c.get("/openapi.json").json()
    for path in (
        "/v1/users",
        "/v1/users/{user_id}/history",
        "/v1/items",
        "/v1/catalog",
        "/v1/ops/health",
        "/v1/ops/lineage",
    ):
        assert path in spec["paths"], path


def _lake(root: Path, validated: str = "same") -> dict[str, str]:
    """A lake with a graph snapshot, a model run and a validation report, as manifests."""
    lake = root / "lake"
    events = lake / "events" / f"dt={AS_OF}"
    events.mkdir(parents=True)
    events_ref = InputRef(uri=str(events), sha256="a" * 64)
    graph = str(lake / "graphs" / f"as_of={AS_OF}")
    with write_artifact(graph, "graph_snapshot") as d:
        d.write_text("stats.json", "{}")
        d.inputs = {f"events/dt={AS_OF}": events_ref}
        d.extra = {"as_of": AS_OF.isoformat()}
    model = str(lake / "models" / f"as_of={AS_OF}")
    with write_artifact(model, "model") as d:
        d.write_text("report.html", "<html><body><h1>training report</h1></body></html>")
        d.write_text("model.json", "{}")
        d.inputs = {"graph": InputRef(uri=graph, sha256=manifest_sha256(graph))}
    docs = root / "docs"
    (docs / "static").mkdir(parents=True)
    (docs / "index.html").write_text("<html><body>Data Docs</body></html>")
    (docs / "static" / "style.css").write_text("body{}")
    ref = {
        "same": events_ref,  # the graph and the report agree on the partition's hash
        "other-hash": InputRef(uri=str(events), sha256="b" * 64),
        "other-partition": InputRef(uri=str(lake / "events" / "dt=2026-11-26"), sha256="c" * 64),
    }[validated]
    val = write_report(
        report_uri(str(lake), VALIDATION, AS_OF),
        "validation_report",
        {"result.json": {"passed": True}},
        docs=docs,
        inputs={"events": ref},
        extra={"date": AS_OF.isoformat(), "passed": True},
    )
    return {"lake": str(lake), "graph": graph, "model": model, "validation": val}


@pytest.fixture(scope="module")
def lineage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict]]:
    root = tmp_path_factory.mktemp("lineage")
    paths = _lake(root)
    inputs = {
        k: InputRef(uri=paths[k], sha256=manifest_sha256(paths[k])) for k in ("model", "graph")
    }
    paths["bundle"] = make_bundle(
        str(root / "bundle"), "v7", seed=2, inputs=inputs, data_cutoff="2026-11-28T00:00:00+00:00"
    )
    srv = start_server(root, "--bundle", paths["bundle"])
    yield srv, paths
    stop_server(srv)


def test_lineage_chain_with_hashes_and_reports(lineage_server: tuple[Server, dict]) -> None:
    srv, paths = lineage_server
    with srv.client() as c:
        got = c.get("/v1/ops/lineage").json()
        model = c.get("/v1/model").json()
        assert got["active"]["version"] == model["active"]["version"] == "v7"
        steps = {s["step"]: s for s in got["lineage"]}
        assert list(steps) == ["bundle", "model", "graph", "validation"]
        for name in steps:
            assert steps[name]["uri"] == paths[name]
            assert steps[name]["sha256"] == manifest_sha256(paths[name])
            assert steps[name]["verified"] is True, steps[name]
            assert steps[name]["written"]
        assert steps["graph"]["as_of"] == steps["validation"]["as_of"] == "2026-11-27"
        assert steps["validation"]["detail"]["passed"] is True
        assert steps["model"]["reports"] == [
            {
                "name": "training report",
                "path": "report.html",
                "url": "/ui/reports/model/report.html",
            }
        ]
        r = c.get("/ui/reports/model/report.html")
        assert r.status_code == 200 and "training report" in r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"].startswith("sandbox")
        docs = c.get(steps["validation"]["reports"][0]["url"])
        assert docs.status_code == 200 and "Data Docs" in docs.text
        assert c.get("/ui/reports/validation/data_docs/static/style.css").status_code == 200
        # only files the artifacts' manifests list
        for bad in (
            "/ui/reports/model/manifest.json",
            "/ui/reports/model/../../etc/passwd",
            "/ui/reports/bundle/bundle.json.bak",
            "/ui/reports/nope/report.html",
        ):
            assert c.get(bad).status_code == 404, bad


def test_lineage_says_when_a_hash_does_not_match(tmp_path: Path) -> None:
    paths = _lake(tmp_path, validated="other-partition")
    inputs = {
        "model": InputRef(uri=paths["model"], sha256="0" * 64),
        "graph": InputRef(uri=paths["graph"], sha256=manifest_sha256(paths["graph"])),
    }
    bundle = make_bundle(str(tmp_path / "bundle"), "v8", seed=3, inputs=inputs)
    steps = {s.step: s for s in lineage(bundle)}
    assert steps["model"].verified is False  # the model run changed since the export
    assert steps["graph"].verified is True
    assert steps["validation"].verified is False  # it validated another partition
    assert "not the graph's" in steps["validation"].link
    gone = json.loads(Path(bundle, "manifest.json").read_text())
    gone["inputs"]["model"]["uri"] = str(tmp_path / "missing")
    Path(bundle, "manifest.json").write_text(json.dumps(gone))
    steps = {s.step: s for s in lineage(bundle)}
    assert steps["model"].error and "unreadable" in steps["model"].error


def test_a_validation_report_hashing_the_partition_differently_is_not_checkable(
    tmp_path: Path,
) -> None:
    """Same partition, another hash: the graph and the validation gate hash a partition's
    files differently today, so the link holds by day and location but is not verified."""
    paths = _lake(tmp_path, validated="other-hash")
    inputs = {"graph": InputRef(uri=paths["graph"], sha256=manifest_sha256(paths["graph"]))}
    bundle = make_bundle(str(tmp_path / "bundle"), "v9", seed=3, inputs=inputs)
    steps = {s.step: s for s in lineage(bundle)}
    assert steps["model"].uri is None and steps["graph"].link == "recorded by the bundle"
    assert steps["validation"].verified is None
    assert "hashes not comparable" in steps["validation"].link
