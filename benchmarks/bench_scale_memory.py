"""Peak memory of one round of every shipped strategy over a million items, the README's own command first.

    python -m benchmarks.bench_scale_memory [--n 1000000] [--threads 2] [--only NAME ...]

Each strategy runs ``python -m runner project=shifted_fashion_mnist project.source.n=N threads=T loop.rounds=1
acquisition=NAME`` (the README's command: ``metrics=quality`` and the default strategy) in a fresh run directory
of its own, as a separate process; the pool itself is built first, once, into the cache and not measured. The
figures come from the run's own ``summary.json``: the process's peak resident memory over the invocation (the
largest of its readings before and after every stage; the runner resets the kernel's high-water mark at each
stage to measure the stage alone, so a child's ``ru_maxrss`` would show only the last one), the largest stage
with its peak, and the score stage's seconds and peak. The strategies that score MC-dropout samples of the CNN
run on a seeded subset of the pool (``selection.pool_subset``), as their protocol does; the table says so.
``--table`` only rebuilds the table from the run directories already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CNN = ("model=cnn", "selection.pool_subset=20000")
# name -> the overrides beside acquisition=NAME (None: the README's command as written)
CASES: dict[str, tuple[str, ...] | None] = {
    "readme (diverse_margin, metrics=quality)": None,
    "diverse_margin": (),
    "entropy": (), "margin": (), "least_confidence": (), "variance": (), "random": (),
    "coreset": (), "badge": (), "cluster_margin": (),
    "typiclust": (), "probcover": (), "image_diversity": (),
    "schedule": (), "portfolio": (),
    "weighted": ("metrics=quality",),
    "bald": CNN, "variation_ratios": CNN, "mean_std": CNN, "batchbald": CNN,
}


def command(name: str, n: int, threads: int, run_dir: Path) -> list[str]:
    base = [sys.executable, "-m", "runner", "project=shifted_fashion_mnist", f"project.source.n={n}",
            f"threads={threads}", "loop.rounds=1", f"hydra.run.dir={run_dir}"]
    extra = CASES[name]
    if extra is None:
        return [*base, "metrics=quality"]
    return [*base, f"acquisition={name}", *extra]


def run_name(name: str) -> str:
    return name.split(" ")[0]


def measure(name: str, n: int, threads: int, out: Path) -> dict:
    run_dir = out / run_name(name)
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(command(name, n, threads, run_dir), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "wall": wall}
    return summarized(name, run_dir, wall)


def summarized(name: str, run_dir: Path, wall: float) -> dict:
    resources = json.loads((run_dir / "summary.json").read_text())["resources"]
    stages = resources["stages"]
    score = stages.get("score:0", {})
    heaviest = max(stages.items(), key=lambda kv: kv[1]["peak_rss_mib"])
    return {
        "name": name, "wall": wall,
        "peak_mib": resources["peak_rss_mib"],
        "score_s": score.get("seconds"), "score_mib": score.get("peak_rss_mib"),
        "heaviest": f"{heaviest[0].split(':')[0]} {heaviest[1]['peak_rss_mib']:.0f}",
        "subset": "pool_subset=20000" if CASES[name] == CNN else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_scale_memory"))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--table", action="store_true", help="rebuild the table from the runs in --out")
    args = parser.parse_args()
    if args.table:
        print_table([summarized(name, args.out / run_name(name), float("nan")) for name in CASES
                     if (args.out / run_name(name) / "summary.json").is_file()])
        return

    from plugins.sources.shifted import shifted_fashion_mnist

    shifted_fashion_mnist(args.n, seed=0, cache_dir="outputs/cache", test_size=10_000)  # built once, not measured
    rows = []
    for name in CASES:
        if args.only and name.split(" ")[0] not in args.only:
            continue
        row = measure(name, args.n, args.threads, args.out)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| strategy | peak MiB (process) | score stage s / MiB | largest stage MiB | wall s | note |")
    print("|---|---:|---:|---|---:|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['name']} | - | - | - | {row['wall']:.0f} | failed: {row['error']} |")
            continue
        print(f"| {row['name']} | {row['peak_mib']:,.0f} | {row['score_s']:.1f} / {row['score_mib']:,.0f} | "
              f"{row['heaviest']} | {row['wall']:.0f} | {row['subset']} |")


if __name__ == "__main__":
    main()
