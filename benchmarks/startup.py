"""Start-up cost of ``python -m runner --help``, and a check that it loads none of the heavy libraries.

``--help`` should answer in the time Hydra needs to compose the config: torch, scikit-learn and matplotlib
belong inside the job. The check reads ``python -X importtime`` output of the real command, so it sees every
module any code path imported, not only the ones this script thinks of. Exit status 1 if a heavy module
was imported (or ``--help`` failed), 0 otherwise.

    python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "sklearn", "matplotlib")
HELP = [sys.executable, "-m", "runner", "--help"]
# Floors to read the figure against: the interpreter alone, and the interpreter plus Hydra's own imports.
BASELINES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import hydra, omegaconf'": [sys.executable, "-c", "import hydra, omegaconf"],
}


def imported_modules(command: list[str]) -> set[str]:
    """Every module ``command`` imported, from the interpreter's own import-time log."""
    result = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules = set()
    for line in result.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package"; the package column is indented by depth.
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                modules.add(name)
    return modules


def heavy_imports(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def wall_times(command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs after one warm-up run (which fills the OS file cache)."""
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i:
            times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (after one warm-up)")
    args = parser.parse_args(argv)

    try:
        modules = imported_modules(HELP)
    except subprocess.CalledProcessError as exc:
        print(f"FAIL: '{' '.join(HELP[1:])}' exited {exc.returncode}\n{exc.stderr[-2000:]}", file=sys.stderr)
        return 1
    heavy = heavy_imports(modules)
    print(f"modules imported by 'python -m runner --help': {len(modules)}")
    for name in HEAVY:
        count = sum(1 for m in heavy if m.split(".")[0] == name)
        print(f"  {name:<11} {'NOT imported' if count == 0 else f'IMPORTED ({count} modules)'}")

    if args.runs > 0:
        print(f"\nwall seconds, {args.runs} runs after one warm-up: median (min-max)")
        for label, command in {"python -m runner --help": HELP, **BASELINES}.items():
            times = wall_times(command, args.runs)
            print(f"  {label:<38} {statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f})")

    if heavy:
        print(f"\nFAIL: --help imported {', '.join(heavy[:10])}", file=sys.stderr)
        return 1
    print("\nOK: --help imports none of " + ", ".join(HEAVY))
    return 0


if __name__ == "__main__":
    sys.exit(main())
