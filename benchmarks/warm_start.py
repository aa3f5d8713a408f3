"""Warm start against training from scratch: seconds of the train stage per round, and test accuracy.

One sweep: ``+experiment=mnist_features model=mlp`` (the feature MLP with MC dropout on the self-supervised
embeddings, 20 start labels, 29 rounds of 20) with ``model.warm_start=true,false`` and seeds 0, 1, 2; the
embeddings come from the cache, so only the model differs. Writes ``warm_start.md`` and ``warm_start.json``.

    python benchmarks/warm_start.py
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from label_efficiency import run_sweep  # noqa: E402

from runner.report import area_under_curve, load_runs, mean_std  # noqa: E402

SEEDS = (0, 1, 2)
SWEEP = ("+experiment=mnist_features", "model=mlp", "model.warm_start=true,false")


def train_seconds(run_dir: Path) -> list[float]:
    with sqlite3.connect(f"{(run_dir / 'state.sqlite').resolve().as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT seconds FROM stages WHERE stage = 'train' AND round > 0 ORDER BY round").fetchall()
    return [float(r[0]) for r in rows]


def main() -> int:
    sweep_dir = ROOT / "outputs" / "bench" / "warm_start"
    command = [sys.executable, "-m", "runner", "-m", *SWEEP, f"seed={','.join(map(str, SEEDS))}",
               f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    wall = run_sweep(command)
    found: dict[str, dict[str, list]] = {}
    for run in load_runs(sweep_dir):
        if run.status != "finished":
            continue
        key = "warm start" if run.config["model"]["warm_start"] else "from scratch"
        entry = found.setdefault(key, {"aulc": [], "final": [], "seconds": [], "curves": {}})
        entry["aulc"].append(area_under_curve(run.curve))
        entry["final"].append(run.curve[-1][1])
        entry["seconds"].append(float(np.mean(train_seconds(sweep_dir / run.path))))
        entry["curves"][str(run.seed)] = run.curve
    report = {"command": "python benchmarks/warm_start.py", "date": time.strftime("%Y-%m-%d"),
              "wall_seconds": wall, "settings": found}
    (HERE / "warm_start.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Warm start against training from scratch", "",
             f"Produced by `{report['command']}` on {report['date']}: `python -m runner -m {' '.join(SWEEP)} "
             f"seed={','.join(map(str, SEEDS))}` (2 joblib jobs, one thread each). The feature MLP "
             "(`model=mlp`) on the self-supervised MNIST embeddings, 20 start labels, 29 rounds of 20; the "
             "same schedule of epochs either way (`model.warm_epochs: null`).", "",
             "| model | train stage, seconds per round | AULC | accuracy at 600 labels |", "|---|---:|---:|---:|"]
    for key, entry in sorted(found.items()):
        seconds, aulc, final = mean_std(entry["seconds"]), mean_std(entry["aulc"]), mean_std(entry["final"])
        lines.append(f"| {key} | {seconds['mean']:.2f} ± {seconds['std']:.2f} | {aulc['mean']:.4f} ± "
                     f"{aulc['std']:.4f} | {final['mean']:.4f} ± {final['std']:.4f} |")
    lines += ["", "Mean ± std over the seeds; curves in `warm_start.json`.", ""]
    (HERE / "warm_start.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
