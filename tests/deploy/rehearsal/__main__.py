"""Rehearse one pod of the chart by hand (root): render, run, probe, terminate.

    sudo .venv/bin/python tests/deploy/rehearsal -f helm/values-production.yaml \\
        --set-json '{"liveStore": {"backend": "memory"}, "autoscaling": {"enabled": false},
                     "replicaCount": 1, "serviceAccount": {"workloadIdentity": {"enabled": false}},
                     "model": {"bundleUri": "/path/to/bundle"}}' \\
        --secret recsys-serving-api-key/api-key=KEY --venv .venv

Prints one JSON line per event (probe results, readiness, termination) and the
container's log when it does not become ready.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rehearsal.podrun import Network, Pod
from rehearsal.podspec import deployment_spec, read_image, render


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main() -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-f", "--values", action="append", default=[])
    ap.add_argument("--set-json", default="{}")
    ap.add_argument("--secret", action="append", default=[], help="NAME/KEY=VALUE")
    ap.add_argument("--venv", default=None, help="this machine's venv standing for /opt/venv")
    ap.add_argument("--wait", type=float, default=120.0)
    args = ap.parse_args()
    values: dict[str, Any] = {}
    for f in args.values:
        values = _merge(values, yaml.safe_load(Path(f).read_text()) or {})
    values = _merge(values, json.loads(args.set_json))
    secrets = {}
    for s in args.secret:
        ref, _, value = s.partition("=")
        name, _, key = ref.partition("/")
        secrets[(name, key)] = value
    dep = deployment_spec(render(values), secrets=secrets, image=read_image())
    pod_spec = dep.pod
    if args.venv:
        from dataclasses import replace

        env = dict(pod_spec.env)
        env["PATH"] = env["PATH"].replace("/opt/venv", str(Path(args.venv).resolve()))
        pod_spec = replace(pod_spec, env=env)
    print(
        json.dumps(
            {"command": pod_spec.command, "uid": pod_spec.uid, "writable": list(pod_spec.writable)}
        )
    )
    net = Network()
    here = Path(__file__).resolve().parents[3]
    pod = Pod("manual", pod_spec, net, Path("/tmp"), needed=[Path(sys.base_prefix), here])
    try:
        pod.start()
        end = time.monotonic() + args.wait
        while not pod.ready and time.monotonic() < end and pod.events.restarts == 0:
            time.sleep(0.2)
        for t, kind, ok, status in pod.events.probe_log:
            print(json.dumps({"probe": kind, "ok": ok, "status": status, "t": round(t, 2)}))
        print(json.dumps({"ready": pod.ready, "restarts": pod.events.restarts}))
        if not pod.ready:
            print(pod.logs()[-4000:])
    finally:
        pod.delete()
        net.close()
    print(
        json.dumps(
            {
                "terminated_in_s": pod.events.terminated_in_s,
                "sigkilled": pod.events.sigkilled,
                "exit_codes": pod.events.exit_codes,
            }
        )
    )
    return 0 if pod.ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
