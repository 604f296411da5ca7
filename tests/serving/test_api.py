"""The API against a real uvicorn server in a subprocess, with a real HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from srv_helpers import API_KEY, Server

from recsys.bundle import TYPE_BITS

H = {"X-API-Key": API_KEY}


def _expected_top(bundle: str, user: str, k: int) -> list[str]:
    """Independent numpy fold-in from the bundle files: what the ONNX scorer must return."""
    users = pd.read_parquet(f"{bundle}/users.parquet")
    items = pd.read_parquet(f"{bundle}/items.parquet")
    h = pd.read_parquet(f"{bundle}/histories.parquet")
    e0 = np.load(f"{bundle}/user_e0.npy", allow_pickle=False)
    S = np.load(f"{bundle}/item_S.npy", allow_pickle=False)
    final = np.load(f"{bundle}/item_final.npy", allow_pickle=False)
    deg = np.load(f"{bundle}/item_inv_sqrt_deg.npy", allow_pickle=False)
    meta = json.loads(Path(f"{bundle}/bundle.json").read_text())
    u = int(users.index[users["user_id"] == user][0])
    hu = h[h["user_idx"] == u]
    idx, w = hu["item_idx"].to_numpy(), hu["weight"].to_numpy(np.float64)
    coef = w * deg[idx] / np.sqrt(w.sum())
    eu = (e0[u] + (coef[:, None] * S[idx]).sum(0)) / (meta["num_layers"] + 1)
    scores = final @ eu
    scores[idx] = -np.inf
    return [items["item_id"][j] for j in np.argsort(-scores, kind="stable")[:k]]


def _history(bundle: str, user: str) -> pd.DataFrame:
    users = pd.read_parquet(f"{bundle}/users.parquet")
    items = pd.read_parquet(f"{bundle}/items.parquet")
    h = pd.read_parquet(f"{bundle}/histories.parquet")
    u = int(users.index[users["user_id"] == user][0])
    hu = h[h["user_idx"] == u].copy()
    hu["item_id"] = items["item_id"].to_numpy()[hu["item_idx"].to_numpy()]
    return hu


def test_recommendations_match_the_fold_in_and_explain(
    server: Server, bundles: dict[str, str]
) -> None:
    with server.client() as c:
        r = c.get("/v1/recommendations/u3", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "v1" and body["source"] == "history"
    got = [it["item_id"] for it in body["items"]]
    assert got == _expected_top(bundles["v1"], "u3", 5)
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    hist = set(_history(bundles["v1"], "u3")["item_id"])
    assert not set(got) & hist  # seen items excluded by default
    for it in body["items"]:
        assert it["because"]["item_id"] in hist
    named, lead = _expected_because(bundles["v1"], "u3", got)
    assert [it["because"]["item_id"] for it in body["items"]] == named
    assert (body["explanation"] or {}).get("item_id") == lead


def _expected_because(bundle: str, user: str, recs: list[str]) -> tuple[list[str], str | None]:
    """What each recommended item's explanation names, and the item the answer's note names:
    an item's largest history contribution; but when one history item is the largest for at
    least two items and half the list, the note names it and those items their second."""
    items = pd.read_parquet(f"{bundle}/items.parquet")
    index = {v: j for j, v in enumerate(items["item_id"])}
    S = np.load(f"{bundle}/item_S.npy", allow_pickle=False)
    final = np.load(f"{bundle}/item_final.npy", allow_pickle=False)
    deg = np.load(f"{bundle}/item_inv_sqrt_deg.npy", allow_pickle=False)
    hu = _history(bundle, user)
    idx, w = hu["item_idx"].to_numpy(), hu["weight"].to_numpy(np.float64)
    coef = w * deg[idx] / np.sqrt(w.sum())
    top = np.array([index[r] for r in recs])
    contrib = coef[:, None] * (S[idx] @ final[top].T)
    ids = items["item_id"].to_numpy()
    order = np.argsort(-contrib, axis=0, kind="stable")
    named = [str(ids[idx[order[0, j]]]) for j in range(len(recs))]
    assert (contrib.max(axis=0) > 0).all()  # else the profile explains an item
    lead = max(dict.fromkeys(named), key=named.count)  # a tie: the higher-ranked one
    if named.count(lead) < 2 or 2 * named.count(lead) < len(recs):
        return named, None
    for j in range(len(recs)):
        if named[j] == lead and contrib[order[1, j], j] > 0:
            named[j] = str(ids[idx[order[1, j]]])
    return named, lead


def test_filters(server: Server, bundles: dict[str, str]) -> None:
    items = pd.read_parquet(f"{bundles['v1']}/items.parquet").set_index("item_id")
    hist = _history(bundles["v1"], "u4")
    with server.client() as c:
        inc = c.get("/v1/recommendations/u4", params={"k": 5, "include_categories": "c1"}).json()
        assert inc["items"]
        assert {items.loc[i["item_id"], "category"] for i in inc["items"]} == {"c1"}
        exc = c.get(
            "/v1/recommendations/u4", params={"k": 30, "exclude_categories": "c1,c2"}
        ).json()
        assert not {items.loc[i["item_id"], "category"] for i in exc["items"]} & {"c1", "c2"}
        base = c.get("/v1/recommendations/u4", params={"k": 3}).json()
        first = base["items"][0]["item_id"]
        ex = c.get("/v1/recommendations/u4", params={"k": 3, "exclude_items": first}).json()
        assert first not in [i["item_id"] for i in ex["items"]]
        assert [i["item_id"] for i in ex["items"]][:2] == [i["item_id"] for i in base["items"]][1:]
        everything = c.get(
            "/v1/recommendations/u4", params={"k": 40, "exclude_seen": "none"}
        ).json()
        assert set(hist["item_id"]) <= {i["item_id"] for i in everything["items"]}
        # per event type: only purchased items are excluded; viewed ones may come back
        bought = set(hist[(hist["types"] & TYPE_BITS["purchase"]) != 0]["item_id"])
        others = set(hist["item_id"]) - bought
        only = c.get("/v1/recommendations/u4", params={"k": 40, "exclude_seen": "purchase"}).json()
        ids = {i["item_id"] for i in only["items"]}
        assert not ids & bought and others <= ids


def test_an_event_changes_the_next_response(server: Server) -> None:
    with server.client() as c:
        before = c.get("/v1/recommendations/u7", params={"k": 5}).json()["items"]
        target = before[0]["item_id"]
        r = c.post(
            "/v1/events",
            headers=H,
            json={"user_id": "u7", "item_id": target, "event_type": "purchase"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["folded"] == 1
        after = c.get("/v1/recommendations/u7", params={"k": 5}).json()["items"]
    assert target not in [i["item_id"] for i in after]  # now seen
    assert [i["score"] for i in after] != [i["score"] for i in before[1:]]  # embedding moved
    # durable: the event is in the log before the 2xx came back
    rows = [json.loads(x) for x in server.event_log.read_text().splitlines()]
    assert any(x["user_id"] == "u7" and x["item_id"] == target and x["known_item"] for x in rows)


def test_batch_events_and_unknown_product(server: Server) -> None:
    with server.client() as c:
        before = c.get("/v1/recommendations/u8", params={"k": 5}).json()
        r = c.post(
            "/v1/events",
            headers=H,
            json={
                "events": [
                    {"user_id": "u8", "item_id": "not-in-catalogue", "event_type": "view"},
                    {
                        "user_id": "u8",
                        "item_id": "also-new",
                        "event_type": "rating",
                        "value": 4.0,
                        "ts": "2026-11-28T10:00:00Z",
                    },
                ]
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2 and r.json()["ignored_unknown_item"] == 2
        after = c.get("/v1/recommendations/u8", params={"k": 5}).json()
    assert after["items"] == before["items"]
    rows = [json.loads(x) for x in server.event_log.read_text().splitlines()]
    kept = [x for x in rows if x["item_id"] in {"not-in-catalogue", "also-new"}]
    assert len(kept) == 2 and not any(x["known_item"] for x in kept)


def test_cold_start_features_segment_and_global(server: Server, bundles: dict[str, str]) -> None:
    pop = pd.read_parquet(f"{bundles['v1']}/popularity.parquet")
    items = pd.read_parquet(f"{bundles['v1']}/items.parquet")
    with server.client() as c:
        f = c.get("/v1/recommendations/stranger", params={"k": 4, "f.age": 30, "f.country": "DE"})
        assert f.status_code == 200, f.text
        assert f.json()["source"] == "features" and len(f.json()["items"]) == 4
        fp = c.post(
            "/v1/recommendations/stranger", json={"k": 4, "features": {"age": 30, "country": "DE"}}
        )
        assert fp.json()["items"] == f.json()["items"]
        other = c.post(
            "/v1/recommendations/stranger", json={"k": 4, "features": {"age": 70, "country": "FR"}}
        )
        assert other.json()["items"] != f.json()["items"]
        bad = c.post("/v1/recommendations/stranger", json={"features": {"shoe_size": 4}})
        assert bad.status_code == 400 and "shoe_size" in bad.text
        seg = c.get("/v1/recommendations/stranger", params={"k": 3, "segment": "FR"}).json()
        glob = c.get("/v1/recommendations/stranger", params={"k": 3}).json()
    assert seg["source"] == "segment_popularity" and glob["source"] == "global_popularity"
    ids = items["item_id"].to_numpy()
    top_fr = pop[pop["segment"] == "FR"].sort_values("rank")["item_idx"][:3]
    top_all = pop[pop["segment"] == ""].sort_values("rank")["item_idx"][:3]
    assert [i["item_id"] for i in seg["items"]] == list(ids[top_fr])
    assert [i["item_id"] for i in glob["items"]] == list(ids[top_all])


def test_new_user_events_personalise(server: Server) -> None:
    with server.client() as c:
        r = c.post(
            "/v1/events",
            headers=H,
            json=[
                {"user_id": "fresh", "item_id": "i2", "event_type": "click"},
                {"user_id": "fresh", "item_id": "i9", "event_type": "add_to_cart"},
            ],
        )
        assert r.status_code == 202
        body = c.get("/v1/recommendations/fresh", params={"k": 3}).json()
    assert body["source"] == "events"
    assert {i["because"]["item_id"] for i in body["items"]} <= {"i2", "i9"}


def test_similar_items(server: Server) -> None:
    with server.client() as c:
        r = c.get("/v1/items/i5/similar", params={"k": 4})
        assert r.status_code == 200
        body = r.json()
        assert len(body["items"]) == 4 and "i5" not in [i["item_id"] for i in body["items"]]
        assert c.get("/v1/items/nope/similar").status_code == 404


def test_auth_and_input_bounds(server: Server) -> None:
    ev = {"user_id": "u1", "item_id": "i1", "event_type": "view"}
    with server.client() as c:
        assert c.post("/v1/events", json=ev).status_code == 401
        assert c.post("/v1/events", json=ev, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/admin/rollback").status_code == 401
        assert c.post("/v1/admin/reload").status_code == 401
        # the key is checked before the body is validated
        assert c.post("/v1/events", json={"user_id": 3}).status_code == 401
        assert c.post("/v1/admin/reload", json={"bundle_uri": 5}).status_code == 401
        assert c.post("/v1/events", json={"user_id": 3}, headers=H).status_code == 422
        assert c.get("/v1/recommendations/u1", params={"k": 0}).status_code == 422
        assert c.get("/v1/recommendations/u1", params={"k": 101}).status_code == 422
        assert c.get("/v1/recommendations/" + "x" * 200).status_code == 422
        r = c.get("/v1/recommendations/u1", params={"exclude_seen": "stolen"})
        assert r.status_code == 400 and "stolen" in r.text
        r = c.get("/v1/recommendations/u1", params={"exclude_items": ",".join(["a"] * 300)})
        assert r.status_code == 400
        assert (
            c.post("/v1/events", headers=H, json={**ev, "event_type": "teleport"}).status_code
            == 422
        )
        assert (
            c.post(
                "/v1/events", headers=H, json={**ev, "event_type": "rating", "value": 7}
            ).status_code
            == 422
        )
        assert c.post("/v1/events", headers=H, json={**ev, "user_id": "u" * 500}).status_code == 422
        # an id the data gate would refuse in the lake is refused here, naming the rule
        for bad in ({"user_id": "u\x001"}, {"item_id": "i\n1"}, {"item_id": "i\x851"}):
            r = c.post("/v1/events", headers=H, json={**ev, **bad})
            assert r.status_code == 422 and "control characters" in r.text
        r = c.post("/v1/events", headers=H, json={"events": [ev] * 1001})
        assert r.status_code == 413
        assert c.post("/v1/events", headers=H, content=b"{not json").status_code == 422
        assert c.get("/v1/items/i1/similar", params={"k": 1000}).status_code == 422
        huge = b'{"events": [' + b" " * (2 << 20) + b"]}"
        r = c.post("/v1/events", headers={**H, "content-type": "application/json"}, content=huge)
        assert r.status_code == 413


def test_health_ready_metrics_openapi(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["ready"] is True and ready["model_version"] == "v1"
        assert ready["live_store"]["backend"] == "memory" and ready["live_store"]["ok"] is True
        c.get("/v1/recommendations/u1")
        text = c.get("/metrics").text
        paths = c.get("/openapi.json").json()["paths"]
    for name in (
        "recsys_request_latency_seconds_bucket",
        "recsys_requests_total",
        "recsys_model_info{uri=",
        "recsys_foldins_total",
        "recsys_served_item_coverage",
    ):
        assert name in text
    assert 'version="v1"' in text
    assert "/v1/recommendations/{user_id}" in paths and "/v1/events" in paths


def test_serving_imports_no_torch(bundles: dict[str, str]) -> None:
    """Importing the server, loading a bundle with a feature projection and scoring (also a
    cold start through the feature spec) never imports torch."""
    code = (
        "import sys, recsys.cli, recsys.serving.app, recsys.serving.registry\n"
        "from recsys.serving.engine import load_engine\n"
        "from recsys.serving.query import Query\n"
        f"e = load_engine({bundles['v1']!r})\n"
        "e.recommend('u1', Query(k=3))\n"
        "e.recommend('new', Query(k=3, features={'age': 30, 'country': 'DE'}))\n"
        "print('torch' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


@pytest.mark.parametrize("key", [None])
def test_writes_refused_without_configured_key(
    key: str | None, bundles: dict[str, str], tmp_path: object
) -> None:
    from pathlib import Path

    from srv_helpers import start_server, stop_server

    s = start_server(Path(str(tmp_path)), "--bundle", bundles["v1"], api_key=key)
    try:
        with s.client() as c:
            r = c.post(
                "/v1/events",
                headers=H,
                json={"user_id": "u1", "item_id": "i1", "event_type": "view"},
            )
            assert r.status_code == 403
            assert c.get("/v1/recommendations/u1").status_code == 200
    finally:
        stop_server(s)


def test_concurrent_events_are_all_durable_and_folded(server: Server) -> None:
    """Group commit: concurrent POSTs share fsyncs, yet each 2xx means its row is on disk."""
    from concurrent.futures import ThreadPoolExecutor

    def post(j: int) -> int:
        with server.client() as c:
            r = c.post(
                "/v1/events",
                headers=H,
                json={"user_id": f"burst{j}", "item_id": f"i{j % 40}", "event_type": "view"},
            )
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(24)))
    assert codes == [202] * 24
    rows = [json.loads(x) for x in server.event_log.read_text().splitlines()]
    assert {x["user_id"] for x in rows} >= {f"burst{j}" for j in range(24)}
    with server.client() as c:
        assert c.get("/v1/recommendations/burst5").json()["source"] == "events"
