"""Peak memory of one round of every shipped strategy over a million items, the README's own command first.

    python -m benchmarks.bench_scale_memory [--n 1000000] [--threads 2] [--only NAME ...]

Each strategy runs ``python -m runner project=shifted_fashion_mnist project.source.n=N threads=T loop.rounds=1
acquisition=NAME`` (the README's command: ``metrics=quality`` and the default strategy) in a fresh run directory
of its own, as a separate process; the pool itself is built first, once, into the cache and not measured. The
figures are the process's peak resident memory as the kernel counts it (GNU time's maximum resident set size,
every stage and the report included), and the score stage's own peak and seconds from ``summary.json``. The
strategies that score MC-dropout samples of the CNN run on a seeded subset of the pool
(``selection.pool_subset``), as their protocol does; the table says so, and why.
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


def measure(name: str, n: int, threads: int, out: Path) -> dict:
    run_dir = out / name.split(" ")[0].replace("(", "")
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    # GNU time reports the child's peak resident set as the kernel counts it, report writing included.
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KIB %M", *command(name, n, threads, run_dir)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS_KIB")), 0)
    if done.returncode != 0:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1], "wall": wall}
    resources = json.loads((run_dir / "summary.json").read_text())["resources"]
    stages = resources["stages"]
    score = stages.get("score:0", {})
    heaviest = max(stages.items(), key=lambda kv: kv[1]["peak_rss_mib"])
    return {
        "name": name, "wall": wall,
        "peak_mib": peak / 1024,
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
    args = parser.parse_args()

    from plugins.sources.shifted import shifted_fashion_mnist

    shifted_fashion_mnist(args.n, seed=0, cache_dir="outputs/cache", test_size=10_000)  # built once, not measured
    rows = []
    for name in CASES:
        if args.only and name.split(" ")[0] not in args.only:
            continue
        row = measure(name, args.n, args.threads, args.out)
        rows.append(row)
        print(json.dumps(row), flush=True)
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
