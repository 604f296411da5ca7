"""Event-log compaction (no event lost or doubled); the deploy gate: publish, smoke, rollback."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.compute as pc
import pytest

from recsys.artifacts import write_artifact
from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import EVENTS, EVENTS_SCHEMA, USERS
from recsys.errors import GateFailed, InputError
from recsys.orchestration.compaction import compact_events
from recsys.orchestration.config import DeployConfig
from recsys.orchestration.deploy import deploy_bundle, get_backend
from recsys.orchestration.smoke import wait_until_served
from recsys.serving import registry

DAY = dt.date(2026, 11, 27)


def _event(i: int, day: dt.date, hour: int = 12) -> dict[str, Any]:
    ts = dt.datetime.combine(day, dt.time(hour, i % 60), tzinfo=dt.UTC)
    return {
        "event_id": f"e{i}",
        "user_id": f"u{i % 3}",
        "item_id": f"i{i % 5}",
        "event_type": "rating" if i % 4 == 0 else "click",
        "value": 4.0 if i % 4 == 0 else None,
        "ts": ts.isoformat(),
        "received_at": "x",
    }


def test_compaction_is_idempotent_and_loses_nothing(tmp_path: Path) -> None:
    lake, logdir = str(tmp_path / "lake"), tmp_path / "serving-events"
    logdir.mkdir()
    # the partition already holds batch-loaded events, one of which the server also logged
    existing = [_event(i, DAY, 1) for i in range(3)]
    rows = {
        k: [dict(e, ts=dt.datetime.fromisoformat(e["ts"]))[k] for e in existing]
        for k in EVENTS_SCHEMA.names
    }
    import pyarrow as pa

    write_partition(lake, EVENTS, DAY, pa.table(rows, schema=EVENTS_SCHEMA))
    logged = [_event(2, DAY, 1)] + [_event(i, DAY) for i in range(10, 20)]
    logged += [_event(12, DAY)]  # a client retry logged twice
    logged += [_event(i, DAY + dt.timedelta(days=1)) for i in range(30, 33)]  # next day
    lines = [json.dumps(e) for e in logged]
    (logdir / "events.jsonl.1").write_text("\n".join(lines[:6]) + "\n")
    (logdir / "events.jsonl").write_text("\n".join(lines[6:]) + "\n" + '{"event_id": "torn')

    first = compact_events(str(logdir), lake, DAY)
    ids = read_partition(lake, EVENTS, DAY).column("event_id").to_pylist()
    want = {f"e{i}" for i in [0, 1, 2, *range(10, 20)]}
    assert sorted(ids) == sorted(want)  # each exactly once, nothing from the next day
    assert (first.total, first.already_in_lake, first.added, first.bad_lines) == (13, 3, 10, 1)

    before = read_partition(lake, EVENTS, DAY)
    second = compact_events(str(logdir), lake, DAY)  # a rerun changes nothing
    assert second.total == 13 and second.added == 0
    assert read_partition(lake, EVENTS, DAY).equals(before)

    (logdir / "events.jsonl").open("a").write("\n" + json.dumps(_event(40, DAY, 23)) + "\n")
    late = compact_events(str(logdir), lake, DAY)  # a late event joins on the next rerun
    assert (late.total, late.added) == (14, 1)


def _bundle(root: Path, version: str) -> str:
    uri = str(root / f"bundle-{version}")
    with write_artifact(uri, "bundle") as draft:
        Path(draft.path("bundle.json")).write_text(json.dumps({"version": version}))
        draft.config = {"version": version}
    return uri


class _Stub(BaseHTTPRequestHandler):
    version = "v0"
    items: ClassVar[list[Any]] = [{"item_id": "i1"}]

    def do_GET(self) -> None:
        body = (
            b"{}"
            if self.path == "/readyz"
            else json.dumps({"model_version": _Stub.version, "items": _Stub.items}).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_smoke_test_waits_for_the_new_version(stub_server: str) -> None:
    _Stub.version, _Stub.items = "v2", [{"item_id": "i1"}]
    assert wait_until_served(stub_server, "u1", "v2", timeout_s=5)["model_version"] == "v2"
    with pytest.raises(GateFailed, match="not serving v3"):
        wait_until_served(stub_server, "u1", "v3", timeout_s=0.3, poll_s=0.05)
    _Stub.items = []
    with pytest.raises(GateFailed, match="recommended nothing"):
        wait_until_served(stub_server, "u1", "v2", timeout_s=1)
    with pytest.raises(GateFailed, match=r"ConnectionRefused|URLError|refused"):
        wait_until_served("http://127.0.0.1:9", "u1", "v2", timeout_s=0.2, poll_s=0.05)


def test_deploy_rolls_back_when_the_smoke_test_fails(tmp_path: Path) -> None:
    reg = str(tmp_path / "registry")
    backend = get_backend("local", reg, DeployConfig())
    v1, v2 = _bundle(tmp_path, "v1"), _bundle(tmp_path, "v2")

    def bad_smoke(version: str) -> None:
        raise GateFailed("deploy", [f"smoke: {version} answered HTTP 500"])

    # the very first deploy fails: the pointer is withdrawn, nothing half-good stays live
    with pytest.raises(GateFailed, match="rolled back to nothing"):
        deploy_bundle(backend, v1, "v1", bad_smoke)
    assert registry.current(reg) is None

    ok = deploy_bundle(backend, v1, "v1", lambda v: None)
    assert (ok.smoke, ok.previous_version, registry.current(reg).version) == ("passed", None, "v1")
    with pytest.raises(GateFailed, match="HTTP 500") as failed:
        deploy_bundle(backend, v2, "v2", bad_smoke)
    assert "rolled back to v1" in str(failed.value)
    assert registry.current(reg).version == "v1"  # the last good bundle keeps serving

    skipped = deploy_bundle(backend, v2, "v2", None)
    assert skipped.smoke == "skipped" and registry.current(reg).version == "v2"


def test_unknown_and_pending_backends_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown deploy backend 'k8s'"):
        get_backend("k8s", str(tmp_path), DeployConfig())


def test_served_events_of_new_users_pass_the_strict_data_gate(tmp_path: Path) -> None:
    """New users of served events join the day's users snapshot; unknown products do not."""
    from recsys.data.synth import SynthConfig, generate
    from recsys.validation.config import ValidationConfig
    from recsys.validation.gate import run_gate

    lake, log_file = str(tmp_path / "lake"), tmp_path / "events.jsonl"
    generate(SynthConfig(users=200, items=60, days=3, end_date=DAY, seed=5), lake)
    users_before = read_partition(lake, USERS, DAY)
    known_item = read_partition(lake, "items", DAY).column("item_id")[0].as_py()
    known_user = users_before.column("user_id")[0].as_py()
    served = [
        dict(_event(i, DAY, 20), user_id=f"brand-new-{i % 2}", item_id=known_item)
        for i in range(100, 104)
    ]
    served.append(dict(_event(104, DAY, 21), user_id=known_user, item_id="not-in-catalogue"))
    log_file.write_text("".join(json.dumps(e) + "\n" for e in served))
    # strict on users (every served user must be known after compaction), tolerant of
    # the one unknown product the catalogue has not listed
    strict = ValidationConfig(max_unknown_user_rate=0.0, data_docs=False)

    first = compact_events(str(log_file), lake, DAY)
    assert first.new_users == 2 and first.added == 5
    users = read_partition(lake, USERS, DAY)
    assert users.num_rows == users_before.num_rows + 2
    new = users.filter(pc.starts_with(users.column("user_id"), "brand-new")).to_pylist()
    assert [u["user_id"] for u in new] == ["brand-new-0", "brand-new-1"]
    assert all(v is None for u in new for k, v in u.items() if k != "user_id")
    assert "not-in-catalogue" not in read_partition(lake, "items", DAY).column("item_id")
    run_gate(lake, DAY, str(tmp_path / "report"), strict)

    again = compact_events(str(log_file), lake, DAY)  # a rerun adds nobody twice
    assert again.new_users == 0 and read_partition(lake, USERS, DAY).equals(users)


def test_new_users_extend_the_latest_snapshot_when_the_day_has_none(tmp_path: Path) -> None:
    import pyarrow as pa

    lake, log_file = str(tmp_path / "lake"), tmp_path / "events.jsonl"
    earlier = pa.table({"user_id": ["u0", "u1"], "age": [30.0, None], "tier": ["gold", None]})
    write_partition(lake, USERS, DAY - dt.timedelta(days=2), earlier)
    log_file.write_text(json.dumps(_event(7, DAY)) + "\n")  # user u1 (known) ...
    log_file.open("a").write(json.dumps(dict(_event(8, DAY), user_id="u9")) + "\n")  # ... and u9

    assert compact_events(str(log_file), lake, DAY).new_users == 1
    users = read_partition(lake, USERS, DAY)
    assert users.column_names == ["user_id", "age", "tier"]  # open features survive
    assert users.to_pylist()[-1] == {"user_id": "u9", "age": None, "tier": None}
    assert read_partition(lake, USERS, DAY - dt.timedelta(days=2)).equals(earlier)
