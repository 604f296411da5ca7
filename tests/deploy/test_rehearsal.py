"""The chart's pod, run for real: ``pytest tests/deploy -k rehearsal``.

The rendered Deployment (real Helm engine) is executed as the kubelet would: its command
line as uid/gid 10001 with every host mount read-only and only the chart's emptyDir
writable, in its own network namespace (a pod IP), probed with the rendered probes, and
terminated with the preStop hook and grace period. Two replicas sit behind Debian's
nginx whose upstreams follow readiness (a Service's endpoints); ``wrk`` loads them while
the RollingUpdate the chart declares rolls bundle v1 to v2. The AKS control plane cannot
run here: the AKS deploy plan of ``recsys.orchestration.aks`` drives this rehearsed
Deployment instead (``..._aks_plan_against_the_rehearsed_cluster``). Needs root (mount
and network namespaces), as CI runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from rehearsal.cluster import Deployment, LoadBalancer, Release
from rehearsal.podrun import Network, Pod
from rehearsal.podspec import DeploymentSpec, deployment_spec, read_image, render

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
API_KEY = "rehearsal-key"
REDIS_KEY = "rehearsal-redis-key"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "unshare", "setpriv")),
    reason="the pod rehearsal needs root with ip, unshare and setpriv (mount and network "
    "namespaces), as CI runs; the rendering checks in test_helm_chart.py still apply",
)


@dataclass
class Lake:
    """Bundles where the pods read them (the lake): readable by uid 10001."""

    root: Path

    def bundle(self, version: str, seed: int, broken: bool = False) -> str:
        from tests.serving.srv_helpers import make_bundle

        path = self.root / version
        # with an item-item term, as training exports them by default
        make_bundle(str(path), version, seed, item_item_width=8)
        if broken:  # a bundle whose checksum check fails: the server refuses to serve it
            (path / "item_final.npy").write_bytes(b"not the exported table")
        return str(path)


@pytest.fixture(scope="module")
def lake() -> Iterator[Lake]:
    root = ROOT / ".tmp" / f"rehearsal-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    for p in (ROOT / ".tmp", root):
        p.chmod(0o755)
    yield Lake(root)
    shutil.rmtree(root, ignore_errors=True)


def values(bundle: str, version: str, **extra: Any) -> dict[str, Any]:
    """Production values with the rehearsal's own lake, key and live store."""
    import yaml

    v: dict[str, Any] = yaml.safe_load((ROOT / "helm" / "values-production.yaml").read_text())
    v["model"] = {"version": version, "bundleUri": bundle, "registryUri": ""}
    v["apiKey"] = {"existingSecret": "", "existingSecretKey": "api-key", "value": API_KEY}
    v["serviceAccount"]["workloadIdentity"] = {"enabled": False, "clientId": "", "tenantId": ""}
    v["liveStore"] = {"backend": "memory"}
    v["autoscaling"] = {**v.get("autoscaling", {}), "enabled": False}
    v["replicaCount"] = 1
    for key, val in extra.items():
        v[key] = (
            {**v[key], **val} if isinstance(val, dict) and isinstance(v.get(key), dict) else val
        )
    return v


def spec_of(v: dict[str, Any]) -> DeploymentSpec:
    """Render, then map the image's venv onto this machine's (the image's /opt/venv)."""
    dep = deployment_spec(
        render(v), secrets={("recsys-redis", "redis-key"): REDIS_KEY}, image=read_image()
    )
    env = dict(dep.pod.env)
    env["PATH"] = env["PATH"].replace("/opt/venv", str(VENV))
    return replace(dep, pod=replace(dep.pod, env=env))


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[Network, LoadBalancer, Deployment]]:
    net = Network()
    lb = LoadBalancer(tmp_path / "lb", free_port())
    dep = Deployment(
        net, lb, tmp_path, pod_files=lambda _: {}, needed=[Path(sys.base_prefix), ROOT]
    )
    try:
        yield net, lb, dep
    finally:
        dep.close()
        lb.close()
        net.close()


def _status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_rehearsal_pod_starts_under_its_security_context_and_passes_its_probes(
    lake: Lake, cluster: tuple[Network, LoadBalancer, Deployment]
) -> None:
    net, _, dep = cluster
    spec = spec_of(values(lake.bundle("v1", 1), "v1"))
    pod = Pod("solo", spec.pod, net, dep.log_dir, needed=dep.needed).start()
    try:
        _wait(lambda: pod.ready, 60, f"readiness; log:\n{pod.logs()}")
        assert pod.proc is not None
        status = _status_of(pod.proc.pid)
        assert status["Uid"].split()[:2] == ["10001", "10001"]
        assert status["Gid"].split()[:2] == ["10001", "10001"]
        assert status["NoNewPrivs"].strip() == "1" and int(status["CapEff"], 16) == 0
        mounts = Path(f"/proc/{pod.proc.pid}/mountinfo").read_text().splitlines()
        opts = {m.split()[4]: m.split()[5] for m in mounts}
        assert opts["/"].startswith("ro") and opts["/app"].startswith("ro")
        assert opts["/tmp"].startswith("rw")  # the chart's emptyDir, the only writable path
        assert os.readlink(f"/proc/{pod.proc.pid}/cwd") == spec.pod.workdir == "/app"
        kinds = [k for _, k, ok, _ in pod.events.probe_log if ok]
        assert kinds[0] == "startup" and "readiness" in kinds
        r = httpx.get(f"{pod.url}/v1/recommendations/u1?k=5", timeout=5)
        assert r.status_code == 200 and r.json()["model_version"] == "v1"
        w = httpx.post(
            f"{pod.url}/v1/events",
            headers={"X-API-Key": API_KEY},
            timeout=5,
            json={"user_id": "u1", "item_id": "i1", "event_type": "view"},
        )
        assert w.status_code == 202  # the memory store's log lives on the emptyDir
        # liveness runs with the rendered period: wait for one
        _wait(
            lambda: any(k == "liveness" for _, k, _, _ in pod.events.probe_log),
            spec.pod.liveness.period_s + 5,
            "a liveness probe",
        )
        assert pod.events.restarts == 0
    finally:
        pod.delete()
    assert not pod.events.sigkilled
    assert pod.events.terminated_in_s is not None
    pre = float(spec.pod.pre_stop[-1]) if spec.pod.pre_stop else 0.0
    assert pre <= pod.events.terminated_in_s < spec.pod.grace_s


def test_rehearsal_unwritable_event_log_is_one_clear_line_not_a_traceback(
    lake: Lake, cluster: tuple[Network, LoadBalancer, Deployment]
) -> None:
    net, _, dep = cluster
    v = values(
        lake.bundle("v1", 1),
        "v1",
        server={"extraEnv": [{"name": "RECSYS_EVENT_LOG", "value": "/app/events"}]},
    )
    pod = Pod("rofs", spec_of(v).pod, net, dep.log_dir, needed=dep.needed).start()
    try:
        _wait(lambda: bool(pod.events.exit_codes), 60, "the container to exit")
    finally:
        pod.delete()
    log = pod.logs()
    assert pod.events.exit_codes[0] == 2
    assert "--event-log /app/events: cannot write" in log and "Read-only file system" in log
    assert "Traceback" not in log


class Load:
    """Keep-alive GETs through the load balancer from a few threads; every answer logged."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.answers: list[tuple[float, int, str | None]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, seed: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            n = seed
            while not self.stop.is_set():
                n += 1
                try:
                    r = c.get(f"/v1/recommendations/u{n % 50}?k=5")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                version = r.json().get("model_version") if r.status_code == 200 else None
                self.answers.append((time.monotonic(), r.status_code, version))
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


def test_rehearsal_termination_drops_no_in_flight_request(
    lake: Lake, cluster: tuple[Network, LoadBalancer, Deployment]
) -> None:
    _, lb, dep = cluster
    spec = spec_of(values(lake.bundle("v1", 1), "v1"))
    spec = replace(spec, replicas=2)
    dep.apply(spec, timeout_s=90)
    victim = dep.pods[0][1]
    during_prestop: list[int] = []
    with Load(lb.url) as load:
        time.sleep(1.0)
        t = threading.Thread(target=victim.delete)
        t.start()
        _wait(lambda: victim.name not in lb.endpoints, 5, "endpoint removal")
        # readiness dropped: the pod is out of the Service but keeps answering while
        # the preStop sleep lets every load balancer catch up
        for _ in range(5):
            during_prestop.append(httpx.get(f"{victim.url}/readyz", timeout=5).status_code)
            time.sleep(0.2)
        t.join()
        time.sleep(1.0)
    statuses = {s for _, s, _ in load.answers}
    assert load.errors == [] and statuses == {200}, (load.errors[:3], statuses)
    assert len(load.answers) > 100
    assert during_prestop == [200] * 5
    assert not victim.events.sigkilled and victim.events.terminated_in_s is not None
    assert victim.events.terminated_in_s < spec.pod.grace_s


WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) v1 = 0; v2 = 0; other = 0 end
request = function()
  return wrk.format("GET", "/v1/recommendations/u" .. math.random(0, 49) .. "?k=5")
end
function response(status, headers, body)
  if status ~= 200 then other = other + 1
  elseif body:find('"model_version":"v1"', 1, true) then v1 = v1 + 1
  elseif body:find('"model_version":"v2"', 1, true) then v2 = v2 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("v1"); b = b + t:get("v2"); c = c + t:get("other")
  end
  io.write(string.format("VERSIONS v1=%d v2=%d other=%d\\n", a, b, c))
end
"""


class Wrk:
    """Debian's wrk against the load balancer for ``seconds``, in the background."""

    def __init__(self, url: str, seconds: int, work: Path, conns: int = 8) -> None:
        script = work / "versions.lua"
        script.write_text(WRK_LUA)
        self.proc = subprocess.Popen(
            ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            stdout=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=600)
        res: dict[str, Any] = {"errors": 0, "error_lines": []}
        for line in out.splitlines():
            if "Non-2xx" in line or "Socket errors" in line:
                res["error_lines"].append(line.strip())
            f = line.split()
            if line.strip().startswith(("50%", "99%")):
                tok = f[1]
                unit = tok.lstrip("0123456789.")
                ms = float(tok[: len(tok) - len(unit)]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
                res[f"p{f[0][:-1]}_ms"] = round(ms, 2)
            elif "requests in" in line:
                res["requests"] = int(f[0])
            elif "Non-2xx" in line:
                res["errors"] += int(f[-1])
            elif line.strip().startswith("Socket errors"):
                res["errors"] += sum(int(x.rstrip(",")) for x in f[3::2])
            elif line.startswith("VERSIONS"):
                res["versions"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        return res


@pytest.fixture()
def redis_for_pods(
    cluster: tuple[Network, LoadBalancer, Deployment], tmp_path: Path
) -> Iterator[tuple[str, int]]:
    """A real redis-server on the node's bridge address, with a password (the Secret)."""
    net = cluster[0]
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            net.gateway,
            "--port",
            str(port),
            "--requirepass",
            REDIS_KEY,
            "--appendonly",
            "yes",
            "--dir",
            str(tmp_path),
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host=net.gateway, port=port, password=REDIS_KEY)
    _wait(lambda: _pings(client), 20, "redis-server")
    yield net.gateway, port
    proc.terminate()
    proc.wait(timeout=10)


def live_store(redis_at: tuple[str, int]) -> dict[str, Any]:
    """The chart's liveStore values for the rehearsal's Redis (key from a Secret, no TLS)."""
    host, port = redis_at
    return {
        "backend": "redis",
        "host": host,
        "port": port,
        "db": 0,
        "tls": False,
        "auth": "key",
        "existingSecret": "recsys-redis",
        "existingSecretKey": "redis-key",
    }


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def test_rehearsal_rolling_update_under_wrk_load_with_the_redis_live_store(
    lake: Lake,
    cluster: tuple[Network, LoadBalancer, Deployment],
    tmp_path: Path,
    redis_for_pods: tuple[str, int],
) -> None:
    _, lb, dep = cluster
    live = live_store(redis_for_pods)
    release = Release(dep, spec_of)
    v1 = values(lake.bundle("v1", 1), "v1", liveStore=live, replicaCount=2)
    v2 = values(lake.bundle("v2", 2), "v2", liveStore=live, replicaCount=2)
    release.upgrade(v1)
    release.wait(120)
    assert {version_of(p) for _, p in dep.pods} == {"v1"}

    steady = Wrk(lb.url, 5, tmp_path).result()
    user = "u7"
    top = httpx.get(f"{lb.url}/v1/recommendations/{user}?k=5").json()["items"][0]["item_id"]
    with Load(lb.url, threads=2) as load:
        during = Wrk(lb.url, 45, tmp_path)
        time.sleep(2)
        t0 = time.monotonic()
        release.upgrade(v2)
        time.sleep(1)
        # a purchase POSTed through the Service while the pods roll
        r = httpx.post(
            f"{lb.url}/v1/events",
            headers={"X-API-Key": API_KEY},
            json={"user_id": user, "item_id": top, "event_type": "purchase"},
        )
        assert r.status_code == 202
        release.wait(120)
        rollout_s = time.monotonic() - t0
        result = during.result()
    assert result["errors"] == 0 and load.errors == [], (result, load.errors[:3])
    assert result["versions"]["other"] == 0
    assert result["versions"]["v1"] > 0 and result["versions"]["v2"] > 0
    # the switch: the last v1 endpoint leaving the Service; no v1 answer after it
    switch = max(t for t, p, ready in lb.changes if not ready and version_of(p) == "v1")
    after = [v for t, s, v in load.answers if t > switch + 0.5]
    assert after and set(after) == {"v2"}, set(after)
    assert {version_of(p) for _, p in dep.pods} == {"v2"}
    for _, p in dep.pods:  # every v2 replica folds in the purchase made during the rollout
        items = [
            i["item_id"]
            for i in httpx.get(f"{p.url}/v1/recommendations/{user}?k=5").json()["items"]
        ]
        assert top not in items
    figures = {
        "bench": "rollout",
        "requests_during": result["requests"],
        "failed": 0,
        "versions": result["versions"],
        "rollout_s": round(rollout_s, 1),
        "p99_during_ms": result["p99_ms"],
        "p99_steady_ms": steady["p99_ms"],
        "p99_ratio": round(result["p99_ms"] / steady["p99_ms"], 2),
        "loadavg": os.getloadavg()[0],
    }
    print(json.dumps(figures))


def version_of(pod: Pod) -> str:
    return pod.spec.annotations["recsys.io/model-version"]


def test_rehearsal_failing_v2_aks_plan_against_the_rehearsed_cluster_keeps_v1_serving(
    lake: Lake,
    cluster: tuple[Network, LoadBalancer, Deployment],
    redis_for_pods: tuple[str, int],
) -> None:
    """The AKS deploy plan (recsys.orchestration.aks), its Helm and Kubernetes calls answered
    by the rehearsed release: a v2 whose bundle fails verification never becomes ready,
    the rollout stalls (maxUnavailable 0: no v1 pod goes), the plan rolls back."""
    from recsys.errors import GateFailed
    from recsys.orchestration.aks import AksTarget, HttpReply, ReleaseRevision, deploy_to_aks

    _, lb, dep = cluster
    release = Release(dep, spec_of)
    base = values(lake.bundle("v1", 1), "v1", replicaCount=2, liveStore=live_store(redis_for_pods))
    release.upgrade(base)
    release.wait(120)
    broken = lake.bundle("v2", 2, broken=True)

    class Helm:
        def history(self, name: str, namespace: str) -> list[ReleaseRevision]:
            return [
                ReleaseRevision(r.number, r.status, r.values["model"]["version"])
                for r in release.history
            ]

        def upgrade_install(
            self, name: str, chart: str, namespace: str, values: Any, timeout_s: int
        ) -> int:
            return release.upgrade({**base, "model": dict(values["model"])})

        def rollback(self, name: str, namespace: str, revision: int, timeout_s: int) -> None:
            release.rollback(revision)

        def uninstall(self, name: str, namespace: str, timeout_s: int) -> None:
            raise AssertionError("v1 was deployed: the plan must roll back, not uninstall")

    class Kube:
        def wait_rollout(self, namespace: str, deployment: str, timeout_s: float) -> None:
            release.wait(timeout_s)

        def get_via_service(
            self, namespace: str, service: str, port: str, path: str, timeout_s: float
        ) -> HttpReply:
            r = httpx.get(f"{lb.url}{path}", timeout=timeout_s)
            return HttpReply(r.status_code, r.text)

    with Load(lb.url, threads=2) as load:
        with pytest.raises(GateFailed) as err:
            deploy_to_aks(
                "v2",
                broken,
                helm=Helm(),
                kube=Kube(),
                target=AksTarget(rollout_timeout_s=30, smoke_user="u1"),
            )
        time.sleep(1)
    assert "rollout" in str(err.value)
    versions = {v for _, _, v in load.answers}
    statuses = {s for _, s, _ in load.answers}
    assert load.errors == [] and statuses == {200} and versions == {"v1"}, (versions, statuses)
    live = release.deployed()
    assert live is not None and live.values["model"]["version"] == "v1"
    assert {version_of(p) for _, p in dep.pods} == {"v1"} and len(dep.pods) == 2
    stuck = [p for p in dep.all_pods if version_of(p) == "v2"]
    assert stuck and all(p.events.ready_at is None for p in stuck)
    assert "sha256" in stuck[0].logs() or "checksum" in stuck[0].logs()


def test_rehearsal_in_a_container_engine() -> None:
    """The same pod inside a real container engine, where one can run. On this project's
    machines none can: Docker has no engine, and Debian's rootful podman (crun) is refused
    ``setrlimit(RLIMIT_NPROC)`` by the sandbox even for unchanged limits (seen 2026-12-03),
    so the process-level rehearsal above is the gate."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip(
            "no container engine: podman is not installed and Docker has no engine "
            "here; the process-level rehearsal is the gate"
        )
    probe = subprocess.run(
        [podman, "run", "--rm", "--rootfs", "/", "/bin/true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"podman cannot start a container here ({probe.stderr.strip()[:200]}); "
            "the process-level rehearsal is the gate"
        )
    pytest.fail(
        "podman runs containers on this machine: build the serve image from a "
        "debootstrap root filesystem and rehearse the pod inside it"
    )
