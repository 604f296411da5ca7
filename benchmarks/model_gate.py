"""The model gate's decisions and the figures behind its defaults. Prints JSON lines.

``planted``: the low-volume planted shop of tests/evaluation/planted_shop.py (a few hundred
events a day) over ``--seeds`` shops: how often a clearly better candidate (the planted truth)
passes, a clearly worse one (the truth upside down) is refused and an equal one (another
perturbed copy of the truth, like production) is undecided; and the standard deviation of
the per-user NDCG@20 differences (the power calculation's input).

``shop``: the generated 10^5-purchase, three-year shop of tests/dags/purchase_log.py, imported
from its CSV and taken through validate -> build-graph (default holdout sizing) -> train
(d=16, K=2, 6 epochs) -> evaluate (popularity, EASE) -> the gate; then the same model on a
one-day holdout (what the gate used to decide on) to show how wide its intervals are.

    .venv/bin/python benchmarks/model_gate.py [--seeds 40] [--skip-shop] [--skip-planted]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.evaluation.gate import CANDIDATE, POPULARITY, check_model_gate  # noqa: E402

M = "ndcg@20"


def emit(**kw: Any) -> None:
    print(json.dumps(kw, default=float), flush=True)


def planted(seeds: int, root: Path) -> None:
    from tests.evaluation.planted_shop import (
        make_shop,
        paired,
        perturbed,
        score_models,
        truth_scorer,
    )

    counts: dict[str, dict[str, int]] = {}
    sds: dict[str, list[float]] = {}
    for seed in range(seeds):
        snap = make_shop(root, seed)
        truth = truth_scorer(snap)

        def upside_down(users: np.ndarray, t: Any = truth) -> np.ndarray:
            return -np.asarray(t(users))

        models = {
            "better": truth,
            "production": perturbed(truth, 1.0, 100 + seed),
            "equal": perturbed(truth, 1.0, 200 + seed),
            "worse": upside_down,
        }
        s = score_models(snap, models)
        for name in ("better", "worse", "equal"):
            decision = check_model_gate(
                paired(s, name, "production"), production="production"
            ).decision
            counts.setdefault(name, {}).setdefault(decision, 0)
            counts[name][decision] += 1
        for a, b in (("equal", "production"), ("better", POPULARITY), ("production", POPULARITY)):
            sds.setdefault(f"{a}-{b}", []).append(float(np.std(s.models[a][M] - s.models[b][M])))
        sds.setdefault("holdout_users", []).append(float(s.users.size))
    emit(
        bench="model_gate.planted",
        seeds=seeds,
        decisions=counts,
        sd_of_ndcg20_difference={
            k: [round(min(v), 3), round(max(v), 3)] for k, v in sds.items() if k != "holdout_users"
        },
        holdout_users=[min(sds["holdout_users"]), max(sds["holdout_users"])],
    )


def shop(root: Path) -> None:
    from recsys.config import load_config
    from recsys.data.importers import import_events
    from recsys.data.readers import EventColumns, FeatureColumns
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig
    from recsys.training.evaluate import evaluate_on_snapshot
    from recsys.validation.gate import ValidationConfig, run_gate
    from tests.dags.purchase_log import write_purchase_log

    t0 = time.perf_counter()
    log = write_purchase_log(root / "export")
    lake = str(root / "lake")
    import_events(
        str(log.purchases),
        lake,
        EventColumns(user="customer", item="product", time="ordered_at"),
        items=FeatureColumns(file=str(log.products), id_col="product", mapping="category=category"),
    )
    t_import = time.perf_counter() - t0
    run_gate(lake, log.last_day, None, ValidationConfig(data_docs=False))
    graph = build_snapshot(lake, log.last_day, load_config(None, GraphConfig))
    train_cfg = root / "train.json"
    train_cfg.write_text(
        json.dumps(
            {
                "epochs": 6,
                "embedding_dim": 16,
                "num_layers": 2,
                "batch_size": 1024,
                "eval_every": 10,
                "progress": False,
                "tracking": {"enabled": False},
            }
        )
    )
    model = str(root / "model")
    t1 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "train",
            "--graph",
            graph,
            "--out",
            model,
            "--config",
            str(train_cfg),
        ],
        check=True,
        capture_output=True,
    )
    t_train = time.perf_counter() - t1
    for label, uri in (("sized holdout", graph), ("one-day holdout", None)):
        if uri is None:  # the same data and model, judged on the as-of day alone
            cfg = GraphConfig(holdout_days=1, holdout_min_users=0, holdout_min_pairs=0)
            uri = build_snapshot(
                lake,
                log.last_day,
                cfg,
                out=str(root / "one-day"),
                report=str(root / "one-day-report"),
            )
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "recsys.cli",
                    "train",
                    "--graph",
                    uri,
                    "--out",
                    str(root / "model-1d"),
                    "--config",
                    str(train_cfg),
                ],
                check=True,
                capture_output=True,
            )
            model = str(root / "model-1d")
        ev = evaluate_on_snapshot(model, uri, baselines=(POPULARITY, "ease"))
        report = check_model_gate(ev.scores)
        summary = ev.summary()
        diff = ev.scores.models[CANDIDATE][M] - ev.scores.models[POPULARITY][M]
        emit(
            bench="model_gate.shop",
            holdout=label,
            rows=log.rows,
            per_day_end=round(log.per_day_end, 1),
            days=(log.last_day - log.first_day).days + 1,
            holdout_days=ev.info.get("holdout_days"),
            holdout_users=ev.info["holdout_users"],
            holdout_pairs=ev.info["holdout_pairs"],
            decision=report.decision,
            beats_popularity=report.checks[0].observed,
            **{
                f"{m}_{k}": [round(summary[m][k], 4)] + [round(x, 4) for x in summary[m][f"{k}_ci"]]
                for m in (CANDIDATE, POPULARITY, "ease")
                for k in (M, "recall@20")
                if m in summary
            },
            sd_of_ndcg20_difference=round(float(diff.std()), 3),
            import_s=round(t_import, 1),
            train_s=round(t_train, 1),
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--skip-planted", action="store_true")
    ap.add_argument("--skip-shop", action="store_true")
    args = ap.parse_args()
    emit(bench="model_gate.run", at=dt.datetime.now(dt.UTC).isoformat(timespec="minutes"))
    with tempfile.TemporaryDirectory(prefix="recsys-gate-bench-") as tmp:
        if not args.skip_planted:
            planted(args.seeds, Path(tmp))
        if not args.skip_shop:
            shop(Path(tmp))


if __name__ == "__main__":
    main()
