"""What the chart says a pod is: rendered by the real Helm engine, read from the manifests.

Independent of recsys: it reads ``helm/recsys-serving`` through ``helm-python-sdk`` (Helm
embedded) and ``docker/serve.Dockerfile`` (the image's ENTRYPOINT, WORKDIR, USER, ENV),
and returns a :class:`PodSpec`: the exact command line, environment (Secrets resolved to
the values the caller provides), user, filesystem rules, probes, termination settings
and rolling-update parameters. Whatever the chart says, the harness then does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "recsys-serving"
DOCKERFILE = ROOT / "docker" / "serve.Dockerfile"


@dataclass(frozen=True)
class Probe:
    path: str
    port: int
    period_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int = 1
    initial_delay_s: float = 0.0


@dataclass(frozen=True)
class Image:
    """The runtime stage of a Dockerfile: what ``docker run`` would start with."""

    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    user: str
    env: dict[str, str]
    exposed: list[int]


@dataclass(frozen=True)
class PodSpec:
    command: list[str]
    """ENTRYPOINT + container args, as the kubelet runs them."""
    env: dict[str, str]
    """The image's ENV, then the container's env (Secrets resolved)."""
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    no_new_privileges: bool
    drop_all_capabilities: bool
    writable: dict[str, int | None]
    """emptyDir mount path -> size limit in bytes (None: unbounded)."""
    port: int
    startup: Probe
    readiness: Probe
    liveness: Probe
    pre_stop: list[str] | None
    grace_s: float
    template_hash: str
    """Changes whenever the pod template does (what makes a Deployment roll)."""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    replicas: int
    max_surge: int
    max_unavailable: int
    min_ready_s: float
    pod: PodSpec


def render(
    values: dict[str, Any] | None, release: str = "recsys-serving", namespace: str = "recsys"
) -> list[dict[str, Any]]:
    """``helm template`` of the chart (with its values.schema.json check)."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if not path.endswith("NOTES.txt"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _instructions(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not buf and not line):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _exec_form(arg: str) -> list[str]:
    if arg.startswith("["):
        parsed: list[str] = json.loads(arg)
        return parsed
    return ["/bin/sh", "-c", arg]


def read_image(path: Path = DOCKERFILE) -> Image:
    """ENTRYPOINT, CMD, WORKDIR, USER, ENV and EXPOSE of the Dockerfile's last stage."""
    stage: list[tuple[str, str]] = []
    for word, rest in _instructions(path):
        if word == "FROM":
            stage = []
        stage.append((word, rest))
    entrypoint: list[str] = []
    cmd: list[str] = []
    workdir, user = "/", "root"
    env: dict[str, str] = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    exposed: list[int] = []
    for word, rest in stage:
        if word == "ENTRYPOINT":
            entrypoint = _exec_form(rest)
        elif word == "CMD":
            cmd = _exec_form(rest)
        elif word == "WORKDIR":
            workdir = rest
        elif word == "USER":
            user = rest
        elif word == "EXPOSE":
            exposed += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = re.sub(
                    r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m.group(1) or m.group(2), ""), value
                )
    return Image(entrypoint, cmd, workdir, user, env, exposed)


def _probe(p: dict[str, Any], ports: dict[str, int]) -> Probe:
    get = p["httpGet"]
    port = get["port"]
    return Probe(
        path=get["path"],
        port=ports[port] if isinstance(port, str) else int(port),
        period_s=float(p.get("periodSeconds", 10)),
        timeout_s=float(p.get("timeoutSeconds", 1)),
        failure_threshold=int(p.get("failureThreshold", 3)),
        success_threshold=int(p.get("successThreshold", 1)),
        initial_delay_s=float(p.get("initialDelaySeconds", 0)),
    )


def _quantity(q: str | None) -> int | None:
    if q is None:
        return None
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1000, "M": 10**6, "G": 10**9}
    for suffix, mult in units.items():
        if str(q).endswith(suffix):
            return int(float(str(q)[: -len(suffix)]) * mult)
    return int(q)


def deployment_spec(
    docs: list[dict[str, Any]],
    secrets: dict[tuple[str, str], str] | None = None,
    image: Image | None = None,
) -> DeploymentSpec:
    """The Deployment of the rendered chart as something to run.

    ``secrets`` maps (Secret name, key) to the value a ``secretKeyRef`` resolves to;
    Secrets the chart renders itself are read from the manifests.
    """
    image = image or read_image()
    known = dict(secrets or {})
    for d in docs:
        if d["kind"] == "Secret":
            import base64

            for k, v in (d.get("data") or {}).items():
                known.setdefault((d["metadata"]["name"], k), base64.b64decode(v).decode())
            for k, v in (d.get("stringData") or {}).items():
                known.setdefault((d["metadata"]["name"], k), str(v))
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports", [])}
    env = dict(image.env)
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            key = (ref["name"], ref["key"])
            if key not in known:
                raise KeyError(f"the pod needs Secret {key[0]!r} key {key[1]!r}: give its value")
            env[e["name"]] = known[key]
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    uid = int(csc.get("runAsUser", psc.get("runAsUser", image.user.split(":")[0])))
    gid = int(csc.get("runAsGroup", psc.get("runAsGroup", uid)))
    groups = [int(psc["fsGroup"])] if "fsGroup" in psc else []
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    writable: dict[str, int | None] = {}
    for m in c.get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "emptyDir" in vol and not m.get("readOnly"):
            writable[m["mountPath"]] = _quantity((vol["emptyDir"] or {}).get("sizeLimit"))
    command = (c.get("command") or image.entrypoint) + (
        c.get("args") if "args" in c else ([] if c.get("command") else image.cmd)
    )
    pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
    template = json.dumps(spec["template"], sort_keys=True)
    strategy = spec.get("strategy", {}).get("rollingUpdate", {})
    replicas = spec.get("replicas")
    if replicas is None:  # the HPA owns the count: it starts at its minimum
        hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        replicas = hpa[0]["spec"].get("minReplicas", 1) if hpa else 1
    return DeploymentSpec(
        name=dep["metadata"]["name"],
        replicas=int(replicas),
        max_surge=int(strategy.get("maxSurge", 1)),
        max_unavailable=int(strategy.get("maxUnavailable", 0)),
        min_ready_s=float(spec.get("minReadySeconds", 0)),
        pod=PodSpec(
            command=[str(x) for x in command],
            env=env,
            workdir=c.get("workingDir") or image.workdir,
            uid=uid,
            gid=gid,
            groups=groups,
            read_only_root=bool(csc.get("readOnlyRootFilesystem", False)),
            no_new_privileges=csc.get("allowPrivilegeEscalation") is False,
            drop_all_capabilities="ALL" in (csc.get("capabilities") or {}).get("drop", []),
            writable=writable,
            port=ports.get("http", next(iter(ports.values()), 8080)),
            startup=_probe(c["startupProbe"], ports),
            readiness=_probe(c["readinessProbe"], ports),
            liveness=_probe(c["livenessProbe"], ports),
            pre_stop=[str(x) for x in pre] if pre else None,
            grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
            template_hash=hashlib.sha256(template.encode()).hexdigest()[:10],
            annotations=dict(spec["template"]["metadata"].get("annotations") or {}),
        ),
    )
