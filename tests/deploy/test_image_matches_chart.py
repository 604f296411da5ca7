"""The serve image and the chart describe one pod: a mismatch fails here, not on AKS."""

from __future__ import annotations

from typing import Any

from rehearsal.podspec import deployment_spec, read_image, render

LIVE = {"liveStore": {"host": "amr.example", "existingSecret": "recsys-redis"}}
SECRETS = {("recsys-redis", "redis-key"): "k"}


def _deployment() -> tuple[Any, Any]:
    return deployment_spec(render(LIVE), secrets=SECRETS), read_image()


def test_user_port_entrypoint_and_paths_agree() -> None:
    dep, image = _deployment()
    pod = dep.pod
    uid, _, gid = image.user.partition(":")
    assert (pod.uid, pod.gid) == (int(uid), int(gid or uid)) == (10001, 10001)
    # the chart gives args only: the image's ENTRYPOINT runs them
    assert image.entrypoint == ["recsys"] and pod.command[:2] == ["recsys", "serve"]
    port = pod.command[pod.command.index("--port") + 1]
    assert int(port) == pod.port == image.exposed[0] == int(image.env["RECSYS_PORT"])
    assert pod.startup.port == pod.readiness.port == pod.liveness.port == pod.port
    # the image bakes a bundle under its WORKDIR; the chart's default serves exactly that
    assert pod.command[pod.command.index("--bundle") + 1] == f"{image.workdir}/bundle"
    assert pod.workdir == image.workdir == "/app"
    # every path the process writes (HOME, TMPDIR, caches) is an emptyDir of the chart
    for var in ("HOME", "TMPDIR", "XDG_CACHE_HOME"):
        path = pod.env[var]
        assert any(path == mp or path.startswith(mp.rstrip("/") + "/") for mp in pod.writable), (
            var,
            path,
            pod.writable,
        )
    assert image.env["HOME"] == pod.env["HOME"] and image.env["TMPDIR"] == pod.env["TMPDIR"]
    assert pod.read_only_root and pod.no_new_privileges and pod.drop_all_capabilities


def test_image_healthcheck_probes_the_chart_liveness_path() -> None:
    from pathlib import Path

    dep, _ = _deployment()
    text = (Path(__file__).resolve().parents[2] / "docker" / "serve.Dockerfile").read_text()
    assert dep.pod.liveness.path in text.split("HEALTHCHECK", 1)[1]
