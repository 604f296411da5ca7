"""The embedded (memory) live store: one replica whose live events survive a kill -9."""

from __future__ import annotations

from pathlib import Path

from srv_helpers import API_KEY, start_server, stop_server


def test_restarted_replica_remembers_acknowledged_events(
    bundles: dict[str, str], tmp_path: Path
) -> None:
    s = start_server(tmp_path, "--bundle", bundles["v1"])
    port = int(s.url.rsplit(":", 1)[1])
    with s.client() as c:
        top = [it["item_id"] for it in c.get("/v1/recommendations/u5?k=5").json()["items"]]
        r = c.post(
            "/v1/events",
            json={"user_id": "u5", "item_id": top[0], "event_type": "purchase"},
            headers={"X-API-Key": API_KEY},
        )
        assert r.status_code == 202
    s.proc.kill()  # no shutdown hook runs: only what was fsynced before the 2xx survives
    s.proc.wait()
    s = start_server(tmp_path, "--bundle", bundles["v1"], port=port)
    try:
        with s.client() as c:
            body = c.get("/v1/recommendations/u5?k=5").json()
        assert body["live_state"] == "ok"
        assert top[0] not in [it["item_id"] for it in body["items"]]
    finally:
        stop_server(s)
