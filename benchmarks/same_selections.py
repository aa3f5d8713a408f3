"""Do the shipped strategies still choose the same items? Run before and after a change that must not alter them.

    python -m benchmarks.same_selections --save /tmp/before      # on the old code
    python -m benchmarks.same_selections --compare /tmp/before   # on the new code: exit 1 on any difference

Runs every shipped strategy on digits (two rounds each), the selection policies, cost budgets, filters, pool
subsets, shards, the CNN family with ``embedder=model``, label audits with relabels and an erring oracle, the
stopping rule, and the offline Encord walk-through of the README (three rounds with annotators in between, in
every act), and keeps what each writes that does not measure time: the selection and relabel files, metrics.jsonl
without seconds, item metrics, label issues, tags, summary.json without timings or environment, and the platform
plans. ``--compare`` runs them again and compares file by file, byte for byte: it is meant for one machine and
installation (across machines floats may differ in their last digits: see docs/reproducibility.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS = ("+experiment=digits", "loop.rounds=2")
CNN = ("model=cnn", "model.epochs=2", "model.min_steps=20")
MC = (*CNN, "acquisition.mc_samples=4")
# name -> overrides of one simulated run
RUNS: dict[str, tuple[str, ...]] = {
    "diverse_margin": DIGITS,
    **{name: (*DIGITS, f"acquisition={name}") for name in (
        "entropy", "margin", "least_confidence", "variance", "random", "coreset", "badge", "cluster_margin",
        "schedule", "portfolio")},
    **{name: (*DIGITS, f"acquisition={name}", "loop.initial_labels=0") for name in (
        "typiclust", "probcover", "image_diversity")},
    "schedule_cold": (*DIGITS, "acquisition=schedule", "loop.initial_labels=0", "loop.rounds=4"),
    "weighted": (*DIGITS, "acquisition=weighted", "metrics=quality"),
    "class_balanced": (*DIGITS, "acquisition=margin", "selection.policy=class_balanced"),
    "stratified": (*DIGITS, "acquisition=entropy", "selection.policy=stratified"),
    "cost": (*DIGITS, "acquisition=margin", "metrics=quality", "selection.cost=area", "selection.budget=500"),
    "filters": (*DIGITS, "acquisition=margin", "metrics=quality", "filters=quality"),
    "filter_classes": (*DIGITS, "acquisition=margin", "filters.classes=[1,7]"),
    "pool_subset": (*DIGITS, "acquisition=margin", "selection.pool_subset=300"),
    "shards": (*DIGITS, "acquisition=entropy", "compute.shard_items=100", "metrics=quality"),
    "chunks": (*DIGITS, "acquisition=margin", "selection.chunk_size=64"),
    "bald": (*DIGITS, *MC, "acquisition=bald"),
    "batchbald": (*DIGITS, *MC, "acquisition=batchbald", "selection.pool_subset=200"),
    "variation_ratios": (*DIGITS, *MC, "acquisition=variation_ratios"),
    "mean_std": (*DIGITS, *MC, "acquisition=mean_std"),
    "cnn_coreset_model_space": (*DIGITS, *CNN, "acquisition=coreset", "embedder=model"),
    "label_spreading": (*DIGITS, "model=label_spreading"),
    "svc": (*DIGITS, "model=svc", "acquisition=margin"),
    "random_forest": (*DIGITS, "model=random_forest", "acquisition=entropy"),
    "relabel": (*DIGITS, "audit=cleanlab", "act=noisy_oracle", "selection.relabel_share=0.2", "loop.rounds=3",
                "loop.initial_labels=40", "audit.min_labels=20"),
    "stop_set": (*DIGITS, "loop.stop_set=200", "loop.rounds=6", "loop.stop_agreement=0.8", "loop.stop_window=2"),
    "target": (*DIGITS, "loop.target_accuracy=0.6"),
    "mnist": ("+experiment=mnist", "loop.rounds=3"),
}
# name -> the act of an Encord walk-through (three rounds, annotators answering 20 tasks in between)
WALKS = {
    "encord_priority": ("+experiment=encord_export",),
    "encord_dry_run": ("+experiment=encord_export", "act.apply=false"),
    "encord_complete": ("+experiment=encord_export", "act=encord_complete", "act.apply=true", "filters.stages=null"),
    "encord_workaround": ("+experiment=encord_export", "act=encord_active_workaround", "act.apply=true",
                          "filters.stages=null"),
    "encord_relabel": ("+experiment=encord_export", "selection.relabel_share=0.2"),
}
# What a run writes that does not measure time.
KEPT_GLOBS = ("selected/*.csv", "relabel/*.csv", "actions/*.json", "label_issues.csv", "item_metrics.csv", "tags.csv",
              "config.resolved.yaml")
SUMMARY_DROPPED = ("resources", "environment", "stage_seconds_total")


def runner(*args: str, cwd: Path = REPO) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"runner {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def simulate(name: str, overrides: tuple[str, ...], work: Path) -> Path:
    run_dir = work / name
    runner(*overrides, f"hydra.run.dir={run_dir}")
    return run_dir


def walk(name: str, overrides: tuple[str, ...], work: Path) -> Path:
    run_dir = work / name
    for step in range(3):
        runner(*overrides, f"hydra.run.dir={run_dir}")
        if step < 2:
            done = subprocess.run(
                [sys.executable, "-m", "plugins.encord.export", "annotate", str(run_dir / "platform"), "--n", "20"],
                cwd=REPO, capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"annotate failed:\n{done.stderr[-3000:]}")
    return run_dir


def keep(run_dir: Path, dest: Path) -> None:
    """The timing-free files of ``run_dir`` into ``dest``."""
    for pattern in KEPT_GLOBS:
        for path in sorted(run_dir.glob(pattern)):
            target = dest / path.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    (dest / "metrics.jsonl").write_text("".join(
        json.dumps({k: v for k, v in row.items() if k != "seconds"}, sort_keys=True) + "\n" for row in rows))
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in SUMMARY_DROPPED:
        summary.pop(key, None)
    (dest / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


def produce(out: Path, only: list[str] | None, workers: int) -> list[str]:
    """Run every case into a scratch folder and keep its files under ``out/<case>``; the failures."""
    out.mkdir(parents=True, exist_ok=True)
    cases = {**{n: (simulate, o) for n, o in RUNS.items()}, **{n: (walk, o) for n, o in WALKS.items()}}
    if only:
        cases = {n: c for n, c in cases.items() if n in only}
    failures = []
    # One fixed scratch folder: the Encord configs resolve paths under the run directory into their digest. Two
    # invocations at once would share it, so the second waits for the first.
    scratch = Path(tempfile.gettempdir()) / "al-runner-same-selections"
    lock = open(Path(tempfile.gettempdir()) / "al-runner-same-selections.lock", "w")  # noqa: SIM115 - held below
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    shutil.rmtree(scratch, ignore_errors=True)
    with lock, concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(kind, name, overrides, scratch): name for name, (kind, overrides) in cases.items()}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                run_dir = future.result()
            except RuntimeError as exc:
                failures.append(f"{name}: {exc}")
                print(f"FAILED {name}", file=sys.stderr)
                continue
            shutil.rmtree(out / name, ignore_errors=True)
            keep(run_dir, out / name)
            print(f"ran {name}", file=sys.stderr)
    return failures


def compare(before: Path, after: Path) -> list[str]:
    differences = []
    for case in sorted(p.name for p in before.iterdir() if p.is_dir()):
        old = {p.relative_to(before / case) for p in (before / case).rglob("*") if p.is_file()}
        new = {p.relative_to(after / case) for p in (after / case).rglob("*") if p.is_file()}
        for rel in sorted(old ^ new):
            differences.append(f"{case}/{rel}: only {'before' if rel in old else 'after'}")
        for rel in sorted(old & new):
            if (before / case / rel).read_bytes() != (after / case / rel).read_bytes():
                differences.append(f"{case}/{rel}: differs")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, help="run every case and keep its files here")
    mode.add_argument("--compare", type=Path, help="run every case and compare with what --save kept here")
    parser.add_argument("--only", nargs="*", help="these cases only")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.save:
        failures = produce(args.save, args.only, args.workers)
        print(f"kept {len(list(args.save.iterdir()))} cases in {args.save}")
        return 1 if failures else 0
    with tempfile.TemporaryDirectory() as fresh:
        failures = produce(Path(fresh), args.only, args.workers)
        differences = compare(args.compare, Path(fresh)) if not args.only else [
            d for d in compare(args.compare, Path(fresh)) if d.split("/")[0] in args.only]
    for line in failures + differences:
        print(line)
    print(f"{len(differences)} differences, {len(failures)} failures")
    return 1 if failures or differences else 0


if __name__ == "__main__":
    sys.exit(main())
