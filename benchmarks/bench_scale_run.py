"""One round of metrics=quality + entropy over pools of 10,000 to 1,000,000 items: per-stage time and peak memory.

    python -m benchmarks.bench_scale_run [--sizes 10000,100000,1000000] [--threads 2] [--out outputs/bench_scale]

Each size runs ``python -m runner project=shifted_fashion_mnist project.source.n=N metrics=quality
loop.rounds=1 selection.budget=1000 threads=T`` (test split: min(10,000, n / 10) items) in a fresh run
directory (the pool itself is built first, once, into ``--cache``, and not timed), then reads
``summary.json``'s ``resources``: seconds and peak resident memory of each stage, the process's peak, and the
neighbour index's measured recall. The last table gives the growth
exponent of each stage's time between consecutive sizes, log(t2 / t1) / log(n2 / n1).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("import", "embed", "metrics", "train", "evaluate", "score", "select", "act")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="outputs/cache")
    parser.add_argument("--out", default="outputs/bench_scale")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from plugins.sources.shifted import shifted_fashion_mnist

    rows = {}
    for n in sizes:
        test_size = min(10_000, n // 10)
        shifted_fashion_mnist(n, seed=0, cache_dir=args.cache, test_size=test_size)  # built once, not timed
        run_dir = Path(args.out) / f"n{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [sys.executable, "-m", "runner", "project=shifted_fashion_mnist", f"project.source.n={n}",
                   f"project.source.test_size={test_size}", f"project.source.cache_dir={args.cache}",
                   "metrics=quality", "loop.rounds=1", "selection.budget=1000", f"threads={args.threads}",
                   f"hydra.run.dir={run_dir}"]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - started
        resources = json.loads((run_dir / "summary.json").read_text())["resources"]
        rows[n] = (wall, resources)
        print(f"n={n:,}: {wall:.1f} s wall, peak {resources['peak_rss_mib']:.0f} MiB", flush=True)

    print("\n| items | wall s | peak MiB | " + " | ".join(f"{s} s / MiB" for s in STAGES) + " | recall@1 |")
    print("|---:|---:|---:|" + "---:|" * len(STAGES) + "---:|")
    for n, (wall, resources) in rows.items():
        cells = []
        for stage in STAGES:
            found = [v for k, v in resources["stages"].items() if k.split(":")[0] == stage]
            seconds = sum(v["seconds"] for v in found)
            peak = max((v["peak_rss_mib"] for v in found), default=0)
            cells.append(f"{seconds:.2f} / {peak:.0f}" if found else "-")
        recall = [i["recall_at_1"] for i in resources.get("neighbour_indexes", [])]
        print(f"| {n:,} | {wall:.1f} | {resources['peak_rss_mib']:.0f} | " + " | ".join(cells)
              + f" | {recall[0] if recall else 'exact'} |")

    print("\n| stage | " + " | ".join(f"{a:,} -> {b:,}" for a, b in zip(sizes, sizes[1:], strict=False)) + " |")
    print("|---|" + "---:|" * (len(sizes) - 1))
    for stage in (*STAGES, "whole run"):
        exponents = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            ta, tb = (_seconds(rows[x], stage) for x in (a, b))
            exponents.append(f"{math.log(tb / ta) / math.log(b / a):.2f}" if ta > 0.05 and tb > 0 else "-")
        print(f"| {stage} | " + " | ".join(exponents) + " |")


def _seconds(row: tuple[float, dict], stage: str) -> float:
    wall, resources = row
    if stage == "whole run":
        return wall
    return sum(v["seconds"] for k, v in resources["stages"].items() if k.split(":")[0] == stage)


if __name__ == "__main__":
    main()
