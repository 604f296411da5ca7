"""A Deployment, its Service and its Helm release, rehearsed with real processes.

- :class:`LoadBalancer`: Debian's HAProxy on loopback in front of the ready pods' IPs,
  its servers switched through the runtime API whenever a pod's readiness changes (what
  the endpoints controller and kube-proxy do for a Service).
- :class:`Deployment`: the RollingUpdate the chart declares (maxSurge, maxUnavailable,
  minReadySeconds): new pods are created while the surge allows, old ones are deleted
  only while enough pods stay available, and deleted pods terminate in the background.
- :class:`Release`: ``helm upgrade`` / ``helm rollback`` over the rendered chart, with a
  revision history, so a deploy plan written against Helm can be driven against it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rehearsal.podrun import Network, Pod
from rehearsal.podspec import DeploymentSpec, PodSpec


class LoadBalancer:
    """HAProxy on ``127.0.0.1:port`` in front of the ready endpoints.

    Endpoints change through HAProxy's runtime API (a server slot gets the pod's address
    and goes ``ready``; a removed pod's slot goes to ``maint``), never by a reload: as with
    kube-proxy, clients' connections to the Service survive endpoint changes, and a
    request already sent to a pod finishes there.
    """

    SLOTS = 32

    def __init__(self, workdir: Path, port: int) -> None:
        if shutil.which("haproxy") is None:
            raise RuntimeError("haproxy is not installed: scripts/setup.sh installs it (apt-get)")
        self.dir = workdir
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = workdir / "admin.sock"
        self.endpoints: dict[str, str] = {}
        self.slots: dict[str, int] = {}
        self.changes: list[tuple[float, Pod, bool]] = []
        """(when, pod, ready) of every endpoint change, in order."""
        self._lock = threading.Lock()
        (workdir / "haproxy.cfg").write_text(
            "global\n"
            f"  stats socket {self.sock} mode 600 level admin\n"
            f"  pidfile {workdir}/haproxy.pid\n"
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n"
            "  timeout server 30s\n  option http-keep-alive\n  retries 2\n"
            "  option redispatch\n"
            f"frontend service\n  bind 127.0.0.1:{port}\n  default_backend pods\n"
            "backend pods\n  balance roundrobin\n"
            "  retry-on conn-failure empty-response response-timeout\n"
            f"  server-template pod 1-{self.SLOTS} 127.0.0.1:9 disabled\n"
        )
        self.proc = subprocess.Popen(
            ["haproxy", "-f", str(workdir / "haproxy.cfg"), "-db"],
            stdout=(workdir / "haproxy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for _ in range(100):
            if self.sock.exists():
                break
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()

    def set_ready(self, pod: Pod, ready: bool) -> None:
        with self._lock:
            if ready:
                slot = self.slots.setdefault(pod.name, len(self.slots) + 1)
                if slot > self.SLOTS:
                    raise RuntimeError("more pods than load balancer slots")
                self._admin(f"set server pods/pod{slot} addr {pod.ip} port {pod.spec.port}")
                self._admin(f"set server pods/pod{slot} state ready")
                self.endpoints[pod.name] = f"{pod.ip}:{pod.spec.port}"
            elif self.endpoints.pop(pod.name, None) is not None:
                self._admin(f"set server pods/pod{self.slots[pod.name]} state maint")
            else:
                return
            self.changes.append((time.monotonic(), pod, ready))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class RolloutReport:
    template: str
    started: float
    finished: float | None = None
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


class Superseded(Exception):
    """A newer pod template replaced the one being rolled out."""


class Deployment:
    """Pods of one Deployment, rolled to a new pod template by :meth:`apply`."""

    def __init__(
        self,
        net: Network,
        lb: LoadBalancer,
        log_dir: Path,
        pod_files: Callable[[PodSpec], dict[str, Path]],
        needed: list[Path],
    ) -> None:
        self.net, self.lb, self.log_dir = net, lb, log_dir
        self.pod_files = pod_files
        self.needed = needed
        self.pods: list[tuple[str, Pod]] = []  # (template hash, pod), alive (not deleting)
        self.terminating: list[threading.Thread] = []
        self.all_pods: list[Pod] = []
        self.spec: DeploymentSpec | None = None
        self._n = 0
        self._generation = 0

    def _create(self, spec: DeploymentSpec) -> Pod:
        self._n += 1
        pod = Pod(
            f"{spec.name[:20]}-{spec.pod.template_hash[:5]}-{self._n}",
            spec.pod,
            self.net,
            self.log_dir,
            baked=self.pod_files(spec.pod),
            needed=self.needed,
            on_ready=self.lb.set_ready,
        )
        self.pods.append((spec.pod.template_hash, pod))
        self.all_pods.append(pod)
        return pod.start()

    def _delete(self, pod: Pod) -> None:
        self.pods = [(h, p) for h, p in self.pods if p is not pod]
        t = threading.Thread(target=pod.delete, daemon=True, name=f"delete-{pod.name}")
        t.start()
        self.terminating.append(t)

    def _available(self, pod: Pod, min_ready_s: float) -> bool:
        return (
            pod.ready
            and pod.events.ready_at is not None
            and (time.monotonic() - pod.events.ready_at >= min_ready_s)
        )

    def apply(self, spec: DeploymentSpec, timeout_s: float) -> RolloutReport:
        """Roll to ``spec`` as the RollingUpdate strategy does; raise TimeoutError when the
        new pods do not all become available in ``timeout_s`` (progress deadline), and
        :class:`Superseded` when another :meth:`apply` started meanwhile."""
        self._generation += 1
        generation = self._generation
        self.spec = spec
        want = spec.pod.template_hash
        report = RolloutReport(template=want, started=time.monotonic())
        deadline = report.started + timeout_s
        while True:
            if generation != self._generation:
                raise Superseded(want)
            new = [p for h, p in self.pods if h == want]
            old = [p for h, p in self.pods if h != want]
            avail = [p for _, p in self.pods if self._available(p, spec.min_ready_s)]
            if len(new) == spec.replicas and not old and len(avail) == spec.replicas:
                report.finished = time.monotonic()
                return report
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rollout to {want} not complete after {timeout_s:.0f}s: "
                    f"{len(new)} new pod(s), {sum(p.ready for p in new)} ready; "
                    f"{len(old)} old pod(s) still serving"
                )
            # scale up: never more than replicas + maxSurge pods (terminating ones excluded)
            while len(new) < spec.replicas and len(new) + len(old) < spec.replicas + spec.max_surge:
                report.created.append(self._create(spec).name)
                new = [p for h, p in self.pods if h == want]
            # scale down old: keep at least replicas - maxUnavailable available
            spare = len(avail) - (spec.replicas - spec.max_unavailable)
            for pod in sorted(old, key=lambda p: p.ready):  # unready ones first
                counted = self._available(pod, spec.min_ready_s)
                if counted and spare <= 0:
                    break
                spare -= int(counted)
                report.deleted.append(pod.name)
                self._delete(pod)
            time.sleep(0.1)

    def close(self) -> None:
        """Kill what is left (cleanup, not a rehearsed termination) and wait for the pods
        already terminating."""
        self._generation += 1  # stops a rollout still running in the background
        for _, pod in list(self.pods):
            pod.kill()
        self.pods = []
        for t in self.terminating:
            t.join(timeout=120)


@dataclass
class Revision:
    number: int
    values: dict[str, Any]
    spec: DeploymentSpec
    status: str


class Release:
    """``helm upgrade --install`` / ``helm rollback`` of the chart onto a :class:`Deployment`.

    As with Helm without ``--wait``, an upgrade returns at once with its revision and the
    Deployment rolls in the background; :meth:`wait` is ``kubectl rollout status``.
    """

    def __init__(
        self,
        deployment: Deployment,
        render_spec: Callable[[dict[str, Any]], DeploymentSpec],
        progress_deadline_s: float = 600.0,
    ) -> None:
        self.deployment = deployment
        self.render_spec = render_spec
        self.progress_deadline_s = progress_deadline_s
        self.history: list[Revision] = []
        self.last_rollout: RolloutReport | None = None
        self._job: threading.Thread | None = None
        self._error: BaseException | None = None

    def upgrade(self, values: dict[str, Any]) -> int:
        spec = self.render_spec(values)  # a chart that does not render fails here, as helm
        for r in self.history:
            if r.status in ("deployed", "pending"):
                r.status = "superseded"
        rev = Revision(len(self.history) + 1, values, spec, "pending")
        self.history.append(rev)

        def roll() -> None:
            try:
                self.last_rollout = self.deployment.apply(spec, self.progress_deadline_s)
                rev.status = "deployed"
            except Superseded:
                pass
            except BaseException as exc:
                rev.status = "failed"
                self._error = exc

        self._error = None
        self._job = threading.Thread(target=roll, daemon=True, name=f"rollout-{rev.number}")
        self._job.start()
        return rev.number

    def wait(self, timeout_s: float) -> RolloutReport:
        """Block until the latest rollout completes; TimeoutError if it does not in time."""
        assert self._job is not None
        self._job.join(timeout=timeout_s)
        if self._job.is_alive():
            raise TimeoutError(f"rollout not complete after {timeout_s:.0f}s")
        if self._error is not None:
            raise self._error
        assert self.last_rollout is not None
        return self.last_rollout

    def rollback(self, revision: int) -> int:
        """A new revision with the values of ``revision`` (the stuck rollout's pods go)."""
        return self.upgrade(self.history[revision - 1].values)

    def deployed(self) -> Revision | None:
        live = [r for r in self.history if r.status == "deployed"]
        return live[-1] if live else None
