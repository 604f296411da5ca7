"""Run a :class:`PodSpec` as the kubelet would, with real processes (root needed).

Each pod gets its own network namespace on a host bridge (its pod IP: two pods can both
listen on the chart's port) and its own mount namespace in which every mount of the host
is read-only (``readOnlyRootFilesystem``), only the chart's emptyDir paths are writable
tmpfs, and the image's working directory holds just the files the image bakes in. The
command line is the rendered one, run as the rendered uid/gid with no new privileges and
no capabilities. The kubelet's part: the startup probe, then readiness and liveness with
the rendered paths, periods and thresholds; restarts with back-off; and termination as
Kubernetes does it (endpoint removal, the preStop hook, SIGTERM, the grace period,
SIGKILL).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rehearsal.podspec import PodSpec, Probe


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


_networks = itertools.count()


class Network:
    """A bridge on the host (the node) with one network namespace per pod."""

    def __init__(self) -> None:
        # unique per process and per network: a test's pods never meet the previous one's
        k = next(_networks)
        self.tag = f"{os.getpid() % 10000}n{k % 100}"
        self.bridge = f"rhbr{self.tag}"
        self.prefix = f"10.{200 + os.getpid() % 50}.{(os.getpid() + k) % 250}"
        self.gateway = f"{self.prefix}.1"
        self._next = 10
        self._lock = threading.Lock()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> tuple[str, str]:
        """A namespace ``name`` with one interface on the bridge; returns (netns, ip)."""
        with self._lock:
            n = self._next
            self._next += 1
        ns, host_if, pod_if = f"rh{self.tag}-{n}", f"rv{self.tag}x{n}", "eth0"
        ip = f"{self.prefix}.{n}"
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", f"{host_if}p")
        _ip("link", "set", f"{host_if}p", "netns", ns)
        _ip("link", "set", host_if, "master", self.bridge)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "link", "set", f"{host_if}p", "name", pod_if)
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", pod_if)
        _ip("-n", ns, "link", "set", pod_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", self.gateway)
        return ns, ip

    def remove(self, ns: str) -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def _traversable(path: Path) -> bool:
    mode = path.stat().st_mode
    return bool(mode & stat.S_IXOTH)


def _mountpoints() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        if mp.startswith(("/proc", "/sys", "/dev", "/run/netns")):
            continue
        out.append(mp.replace("\\040", " "))
    return out


def container_script(spec: PodSpec, baked: dict[str, Path], needed: list[Path], stage: Path) -> str:
    """The shell (run as root in fresh namespaces) that builds the container's filesystem
    view and execs the rendered command as the rendered user.

    ``needed`` are host paths the process must reach read-only (the interpreter, the
    installed package: the image's contents). Each is stashed first under ``stage`` (a
    private tmpfs outside every path the pod mounts over), so it can be brought back where
    a later mount hides it: behind a directory others cannot enter (``/root``), which gets
    an empty tmpfs as in an image, or under one of the chart's emptyDir paths (a checkout
    under ``/tmp``)."""
    q = shlex.quote
    lines = [
        "set -e",
        "mount --make-rprivate /",
        f"mount -t tmpfs -o mode=0700 tmpfs {q(str(stage))}",
    ]
    for i, path in enumerate(needed):
        lines += [
            f"mkdir {q(str(stage / str(i)))}",
            f"mount --bind {q(str(path))} {q(str(stage / str(i)))}",
        ]
    masked = sorted(
        {
            blocked[0]
            for path in needed
            if (
                blocked := [
                    a for a in reversed(path.parents) if a != Path("/") and not _traversable(a)
                ]
            )
        }
    )
    for top in masked:
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {q(str(top))}")
        lines += [f"mkdir -p {q(str(p))}" for p in needed if top in p.parents]
    if spec.read_only_root:
        for mp in [*_mountpoints(), *(str(t) for t in masked)]:
            lines.append(f"mount -o remount,bind,ro {q(mp)}")
    for mp, size in spec.writable.items():
        opt = f"size={size}," if size else ""
        lines.append(f"mkdir -p {q(mp)} 2>/dev/null || true")
        lines.append(f"mount -t tmpfs -o {opt}mode=1777 tmpfs {q(mp)}")
    hiders = [*masked, *(Path(mp) for mp in spec.writable)]
    for i, path in enumerate(needed):
        if any(h == path or h in path.parents for h in hiders):
            lines += [
                f"mkdir -p {q(str(path))} 2>/dev/null || true",
                f"mount --bind {q(str(stage / str(i)))} {q(str(path))}",
                f"mount -o remount,bind,ro {q(str(path))}",
            ]
    wd = q(spec.workdir)
    lines.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {wd}")
    for target, src in baked.items():
        lines += [f"mkdir -p {q(target)}", f"mount --bind {q(str(src))} {q(target)}"]
    lines.append(f"mount -o remount,bind,ro {wd}")
    lines.append(f"umount -l {q(str(stage))}")
    env = [f"{k}={v}" for k, v in spec.env.items()]
    priv = ["setpriv", f"--reuid={spec.uid}", f"--regid={spec.gid}"]
    priv += [f"--groups={','.join(map(str, spec.groups))}"] if spec.groups else ["--clear-groups"]
    if spec.no_new_privileges:
        priv.append("--no-new-privs")
    if spec.drop_all_capabilities:
        priv += ["--inh-caps=-all", "--bounding-set=-all"]
    lines.append(f"cd {wd}")
    lines.append("exec " + shlex.join([*priv, "env", "-i", *env, *spec.command]))
    return "\n".join(lines)


def http_ok(ip: str, port: int, path: str, timeout: float) -> tuple[bool, int | None]:
    """One probe: success is a status in [200, 400), as the kubelet's httpGet."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
        return 200 <= status < 400, status
    except OSError:
        return False, None
    finally:
        conn.close()


@dataclass
class PodEvents:
    """What happened to a pod, for the tests to read."""

    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    probe_log: list[tuple[float, str, bool, int | None]] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    sigkilled: bool = False
    terminated_in_s: float | None = None


class Pod:
    """One pod: a container process in its namespaces, watched by a kubelet thread."""

    def __init__(
        self,
        name: str,
        spec: PodSpec,
        net: Network,
        log_dir: Path,
        baked: dict[str, Path] | None = None,
        needed: list[Path] | None = None,
        on_ready: Callable[[Pod, bool], None] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.net = net
        self.netns, self.ip = net.add(name)
        self.baked = dict(baked or {})
        self.needed = list(needed or [Path(sys.base_prefix)])
        self.on_ready = on_ready
        self.log_path = log_dir / f"{name}.log"
        self.ready = False
        self.deleting = False
        self.events = PodEvents()
        self.proc: subprocess.Popen[bytes] | None = None
        # the stash for needed paths: outside every path the pod mounts over (not /tmp)
        self._stage = Path(tempfile.mkdtemp(prefix=f"rh-{name}-", dir="/var/tmp"))
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._kubelet, daemon=True, name=f"kubelet-{name}")

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.spec.port}"

    # ---- the container ----

    def _start_container(self) -> None:
        Path(self.spec.workdir).mkdir(parents=True, exist_ok=True)  # the empty mountpoint
        script = container_script(self.spec, self.baked, self.needed, self._stage)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                script,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.events.started_at = time.monotonic()

    def _exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def _kill_container(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            if ready:
                self.events.ready_at = time.monotonic()
            if self.on_ready is not None:
                self.on_ready(self, ready)

    def _probe(self, kind: str, p: Probe) -> bool:
        ok, status = http_ok(self.ip, p.port, p.path, p.timeout_s)
        self.events.probe_log.append((time.monotonic(), kind, ok, status))
        return ok

    # ---- the kubelet ----

    def start(self) -> Pod:
        self._thread.start()
        return self

    def _wait(self, seconds: float) -> bool:
        """Sleep; False as soon as the pod is being deleted."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.deleting:
                return False
            time.sleep(min(0.05, end - time.monotonic()))
        return not self.deleting

    def _kubelet(self) -> None:
        backoff = 10.0
        s = self.spec
        while not self.deleting:
            self._start_container()
            if not self._wait(s.startup.initial_delay_s):
                return
            fails, started = 0, False
            while not self.deleting and not self._exited():
                if self._probe("startup", s.startup):
                    started = True
                    break
                fails += 1
                if fails >= s.startup.failure_threshold:
                    break
                if not self._wait(s.startup.period_s):
                    return
            if started:
                backoff = 10.0
                self._run_probes()
            if self.deleting:
                return
            # the container died or failed a probe: restart it, with CrashLoopBackOff
            self._set_ready(False)
            self._kill_container()
            if self.proc is not None:
                self.events.exit_codes.append(self.proc.returncode)
            self.events.restarts += 1
            if not self._wait(backoff):
                return
            backoff = min(backoff * 2, 300.0)

    def _run_probes(self) -> None:
        s = self.spec
        now = time.monotonic()
        next_ready, next_live = now, now + s.liveness.period_s
        r_ok = r_fail = l_fail = 0
        while not self.deleting and not self._exited():
            now = time.monotonic()
            if now >= next_ready:
                if self._probe("readiness", s.readiness):
                    r_ok, r_fail = r_ok + 1, 0
                    if r_ok >= s.readiness.success_threshold:
                        self._set_ready(True)
                else:
                    r_ok, r_fail = 0, r_fail + 1
                    if r_fail >= s.readiness.failure_threshold:
                        self._set_ready(False)
                next_ready = now + s.readiness.period_s
            if now >= next_live:
                if self._probe("liveness", s.liveness):
                    l_fail = 0
                else:
                    l_fail += 1
                    if l_fail >= s.liveness.failure_threshold:
                        return
                next_live = now + s.liveness.period_s
            self._wait(min(next_ready, next_live) - time.monotonic())

    # ---- termination ----

    def delete(self) -> None:
        """Terminate as Kubernetes does: the endpoint goes at once (readiness false), the
        preStop hook runs, then SIGTERM, and SIGKILL when the grace period is over."""
        t0 = time.monotonic()
        self.deleting = True
        self._set_ready(False)
        s = self.spec
        deadline = t0 + s.grace_s
        if s.pre_stop and not self._exited():
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    ["ip", "netns", "exec", self.netns, *s.pre_stop],
                    timeout=max(deadline - time.monotonic(), 0.1),
                    capture_output=True,
                )
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.events.sigkilled = True
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
            self.events.exit_codes.append(self.proc.returncode)
        self.events.terminated_in_s = time.monotonic() - t0
        self._thread.join(timeout=5)
        self.net.remove(self.netns)
        with contextlib.suppress(OSError):
            self._stage.rmdir()

    def kill(self) -> None:
        """Tear down at once (test cleanup, not a rehearsal of termination)."""
        self.deleting = True
        self._set_ready(False)
        self._kill_container()
        self._thread.join(timeout=5)
        self.net.remove(self.netns)
        with contextlib.suppress(OSError):
            self._stage.rmdir()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
