"""Several arms of ``gowalla.py`` in one process, sharing the work that does not depend on the arm.

Each ``--arm NAME=ARGS`` is a list of extra ``gowalla.py`` arguments (split like a shell
line) added to the common ones (everything after ``--``). The arms run one after the other;
an arm only starts while the ``--deadline`` (seconds since the start) is not past, so a
run on a lent GPU ends on time. What arms have in common is computed once: the spectral
start of the embeddings (``svds``, ~40 s at d=512 on 16 cores, CPU-bound also on a GPU
run) and the distillation teacher's lists (~5 min on one core), each keyed by every input
it reads; ``--teacher-cache DIR`` keeps the teacher's lists on disk between runs too. The
training times the arms report exclude both, as ``gowalla.py``'s always do (they are built
before training starts); the first arm's wall time includes them.

    python benchmarks/gowalla_arms.py --deadline 400 --teacher-cache .cache/teachers \\
        --arm 'base=' --arm 'w05=--set distill_weight=0.5' \\
        -- --device cuda --config benchmarks/configs/gowalla-distill.toml --set item_item_keep=0

Prints ``gowalla.py``'s JSON lines, each arm's preceded by ``{"event": "arm", ...}``.

``--score-unfolded`` first trains each arm once more without the fold and validates it only
at the schedule's end (``{"event": "arm_score", ...}``): a score of the whole schedule,
where the usual validation (the last one before the validation pairs are folded in) cannot
see what an arm changes in the folded epochs. ``benchmarks/gpu/digest.py`` then picks the
arm on that score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gowalla import config_of, load_gowalla, parse_args
from gowalla import run as gowalla_run

from recsys.training import state, training_graph
from recsys.training.data import InteractionData, split_validation
from recsys.training.distill import teacher_top
from recsys.training.init import spectral_embeddings


def _key(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def share_teachers(folder: Path | None) -> None:
    """Memoise the teacher's lists (in memory, and in ``folder`` when given)."""
    memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def shared(
        data: InteractionData, top: int, low_pass: float, progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = _key(
            data.n_users, data.n_items, top, low_pass,
            data.train_user, data.train_item, data.train_weight,
        )  # fmt: skip
        if key in memo:
            return memo[key]
        path = None if folder is None else folder / f"teacher-{key}.pt"
        if path is not None and path.exists():
            memo[key] = torch.load(path)
            return memo[key]
        memo[key] = teacher_top(data, top, low_pass, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(memo[key], tmp)
            tmp.replace(path)
        return memo[key]

    training_graph.teacher_top = shared  # type: ignore[attr-defined]


def share_spectral_start() -> None:
    """Memoise the spectral start in memory (at d=512 it is 145 MB: not worth a file)."""
    memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    inner: Callable[..., tuple[np.ndarray, np.ndarray]] = spectral_embeddings

    def shared(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        key = _key(*args, *sorted(kwargs.items()))
        if key not in memo:
            memo[key] = inner(*args, **kwargs)
        eu, ei = memo[key]
        return eu.copy(), ei.copy()

    state.spectral_embeddings = shared  # type: ignore[attr-defined]


def prepare_teachers(common: list[str], arms: list[tuple[str, list[str]]]) -> None:
    """Build (into the teacher cache) every teacher's lists the arms will ask for: the
    training graph's (validation held out) and, where the run folds, every pair's. Run it
    where CPU time is cheap, then carry the cache to the GPU run."""
    data: InteractionData | None = None
    for name, extra in arms:
        args = parse_args([*common, *extra])
        cfg = config_of(args)
        if cfg.distill_weight <= 0:
            continue
        if data is None:
            data = load_gowalla(args.data)[1]
        graphs = [split_validation(data, cfg.val_fraction, cfg.seed).train]
        if cfg.fold_validation_epochs:
            graphs.append(data)
        for g in graphs:
            t = time.perf_counter()
            training_graph.teacher_top(g, cfg.distill_top, cfg.distill_low_pass, cfg.progress)  # type: ignore[attr-defined]
            print(
                json.dumps(
                    {
                        "event": "teacher",
                        "arm": name,
                        "edges": g.n_interactions,
                        "seconds": round(time.perf_counter() - t, 1),
                    }
                ),
                flush=True,
            )


def score_unfolded(common: list[str], extra: list[str]) -> dict[str, Any]:
    """The arm trained without the fold and validated once, at its last epoch."""
    epochs = config_of(parse_args([*common, *extra])).epochs
    unfolded = ["--set", "fold_validation_epochs=0", "--set", f"eval_every={epochs}"]
    summary = gowalla_run([*common, *extra, *unfolded, "--no-test-monitor"])
    return {"validation_at_end": summary["validation_at_best"], "epochs": epochs}


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, eq, args = text.partition("=")
    if not (name and eq):
        raise SystemExit(f"--arm {text!r}: expected NAME=ARGS")
    return name, shlex.split(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    common: list[str] = []
    if "--" in argv:
        common = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=ARGS")
    ap.add_argument(
        "--arms-file",
        type=Path,
        default=None,
        help="more arms, one NAME=ARGS per line (blank lines and # comments skipped)",
    )
    ap.add_argument("--deadline", type=float, default=None, help="start no arm after this (s)")
    ap.add_argument("--teacher-cache", type=Path, default=None)
    ap.add_argument(
        "--score-unfolded",
        action="store_true",
        help="score each arm by a run without the fold, validated at its last epoch",
    )
    ap.add_argument(
        "--prepare-teachers",
        action="store_true",
        help="only build the arms' teacher lists into --teacher-cache, train nothing",
    )
    args = ap.parse_args(argv)
    texts = list(args.arm)
    if args.arms_file is not None:
        try:
            lines = args.arms_file.read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"--arms-file {args.arms_file}: {exc.strerror}") from None
        texts += [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]
    arms = [parse_arm(a) for a in texts] or [("default", [])]
    share_teachers(args.teacher_cache)
    if args.prepare_teachers:
        if args.teacher_cache is None:
            raise SystemExit("--prepare-teachers needs --teacher-cache")
        prepare_teachers(common, arms)
        return 0
    share_spectral_start()
    t0 = time.perf_counter()
    for name, extra in arms:
        elapsed = time.perf_counter() - t0
        if args.deadline is not None and elapsed > args.deadline:
            print(json.dumps({"event": "arm_skipped", "arm": name, "at_s": round(elapsed, 1)}))
            continue
        print(json.dumps({"event": "arm", "arm": name, "args": extra, "at_s": round(elapsed, 1)}))
        sys.stdout.flush()
        try:
            if args.score_unfolded:
                print(json.dumps({"event": "arm_unfolded", "arm": name}))
                print(
                    json.dumps({"event": "arm_score", "arm": name, **score_unfolded(common, extra)})
                )
            gowalla_run([*common, *extra])
        except (Exception, SystemExit) as exc:  # one bad arm does not end the others
            print(json.dumps({"event": "arm_failed", "arm": name, "error": repr(exc)}))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
