"""One line per arm of ``gowalla_arms.py`` output files: validation and test at the
validation-chosen checkpoint, the best test seen (selected on test: labelled), times; then
the arm the rule picks (the highest validation Recall@20; of the unfolded run's end when
``gowalla_arms.py --score-unfolded`` scored the arms) and its test figures, so a sweep's
result is the rule's, not the best test line.

    python benchmarks/gpu/digest.py OUT/g2.jsonl OUT/g1.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def digest(path: Path) -> list[str]:
    lines, arm = [], "?"
    chosen: tuple[float, str, dict[str, float]] | None = None
    scores: dict[str, float] = {}
    unfolded = False
    for raw in path.read_text().splitlines():
        try:
            r = json.loads(raw)
        except ValueError:
            continue
        event = r.get("event")
        if event == "arm_unfolded":  # the scoring run's own lines: only its score counts
            unfolded = True
            continue
        if unfolded and event != "arm_score":
            continue
        if event == "arm_score":
            unfolded = False
            scores[r["arm"]] = r["validation_at_end"].get("recall@20", 0.0)
            lines.append(f"{r['arm']}: unfolded, validation at the end {scores[r['arm']]:.5f}")
            continue
        if event in ("arm", "arm_skipped", "arm_failed"):
            arm = r["arm"]
            if event != "arm":
                lines.append(f"{arm}: {event} {r.get('error', '')}")
        elif event == "summary":
            v, t = r["validation_at_best"], r["test_at_val_best"]
            score = scores[arm] if scores else v.get("recall@20", 0)
            if chosen is None or score > chosen[0]:
                chosen = (score, arm, t)
            seen = r["test_best_seen_selected_on_test"]
            best = "n/a" if not seen else f"{seen['recall@20']:.5f} @ {seen['epoch']}"
            lines.append(
                f"{arm}: val {v.get('recall@20', 0):.5f} / {v.get('ndcg@20', 0):.5f}"
                f" -> test {t['recall@20']:.5f} / {t['ndcg@20']:.5f}"
                f" | best seen on test {best}"
                f" | to {r['target_recall@20']}: {r['train_seconds_to_target']} s"
                f" | train {r['train_seconds']} s, wall {r['wall_seconds']} s"
            )
    if chosen is not None:
        val, arm, t = chosen
        basis = "the unfolded runs' validation" if scores else "validation"
        lines.append(
            f"chosen on {basis} (Recall@20 {val:.5f}): {arm} -> test "
            f"{t['recall@20']:.5f} / {t['ndcg@20']:.5f}"
        )
    return lines


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"== {name}")
        print("\n".join(digest(Path(name))) if Path(name).exists() else "(missing)")
