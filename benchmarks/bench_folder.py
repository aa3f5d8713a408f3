"""A folder of 100,000 JPEG photos through the runner: import, import from the cache, quality metrics, one round.

    python -m benchmarks.bench_folder [--n 100000] [--folder DIR] [--labels 500] [--only CASE ...]
    python -m benchmarks.bench_folder --generate          # only make the folder
    python -m benchmarks.bench_folder --profile 2000      # where one file's import time goes, step by step

The folder (``/tmp/folder100k`` for 100,000 images; made once and reused, generated on a process pool) holds
Fashion-MNIST's training images (/usr/share/datasets/fashion-mnist), each with a little seeded noise, upscaled to
48..640 pixels a side in mixed aspects, a quarter of them grayscale and the rest tinted, saved as JPEG quality 85
in one sub-folder per class (``coat/012345.jpg``). Every case is one whole ``python -m runner project=folder ...``
command in a subprocess with a run directory of its own:

- ``import``: the first read, into an empty ``project.source.cache_dir``; ``import_cached``: the same command
  again, pixels from the cache. Both label from the class sub-folders and run one round of the cheapest strategy
  (``acquisition=random``), since the runner has no import-only command; the source's own rate comes from its
  console line, the rest of the command from the run's per-stage figures;
- ``quality``: the same with ``metrics=quality``, whose image metrics read the originals;
- ``round``: one round (``loop.rounds=1``) of the default strategy, labels from the class sub-folders (a
  simulation: the oracle reveals the labels it selects);
- ``file_loop``: round 0 of the file loop (``loop.mode=human act=files``) with a manifest that labels
  ``--labels`` items and leaves the rest unlabelled, the case of a folder nobody has labelled yet (a simulation
  cannot start there: the oracle has nothing to reveal for an unlabelled pick). For these two, what a user is
  left with: the console output, report.html and the batch's page.

Peak memory is the larger of two readings, because the runner resets the kernel's high-water mark at every stage
to measure stages alone: the run's own ``summary.json`` (the largest per-stage reading, the source's read
included) and the child's ``ru_maxrss`` from ``wait4`` (which then covers only the last stage and the report
writing after it). Results go to ``benchmarks/folder.json`` and ``benchmarks/folder.md``; text below a
``## Findings`` line in an existing folder.md is kept.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# Run from a checkout without installing it: the repository root goes first on the import path.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugins.sources.offline import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, read_idx  # noqa: E402

HERE = Path(__file__).resolve().parent
# Changing how images are made changes this, so an older folder is not taken for a finished one.
GENERATOR = "fashion-jpeg-v1"
MARKER = ".complete"  # hidden: the folder source leaves names starting with a dot out
MIN_SIDE, MAX_SIDE = 48, 640
QUALITY = 85
GENERATE_CHUNK = 500
IMPORT_TARGET = 1_000  # images per second on 2 cores (issue 21)
MEMORY_TARGET_MB = 2_000
FINDINGS = "## Findings"


# --- the folder -----------------------------------------------------------------------------------------------
def default_folder(n: int) -> Path:
    return Path(f"/tmp/folder{n // 1000}k" if n % 1000 == 0 else f"/tmp/folder{n}")


def file_name(i: int, label: int) -> str:
    return f"{FASHION_MNIST_CLASSES[label].lower().replace('/', '-').replace(' ', '_')}/{i:06d}.jpg"


def _source_images() -> tuple[np.ndarray, np.ndarray]:
    root = Path(FASHION_MNIST_ROOT)
    return read_idx(root / "train-images-idx3-ubyte.gz"), read_idx(root / "train-labels-idx1-ubyte.gz")


def ensure_folder(folder: Path, n: int, workers: int) -> dict[str, Any]:
    """The folder of ``n`` images, made (or completed) unless its marker says it is done; what it holds."""
    marker = folder / MARKER
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found.get("n") == n and found.get("generator") == GENERATOR:
            return dict(found)
    images, labels = _source_images()
    started = time.perf_counter()
    tasks = [(folder, start, min(start + GENERATE_CHUNK, n)) for start in range(0, n, GENERATE_CHUNK)]
    # Processes, not threads: the noise and tinting are numpy work of many small arrays, held by the GIL.
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(images, labels)) as pool:
        for done, _ in enumerate(pool.map(_generate_chunk, *zip(*tasks, strict=True)), 1):
            if done % 20 == 0 or done == len(tasks):
                print(f"generated {min(done * GENERATE_CHUNK, n):,} / {n:,} images", flush=True)
    sizes = [entry.stat().st_size for entry in _walk_files(folder)]
    found = {"n": n, "generator": GENERATOR, "seconds": round(time.perf_counter() - started, 1),
             "bytes": int(sum(sizes)), "files": len(sizes)}
    marker.write_text(json.dumps(found))
    return found


def _walk_files(folder: Path) -> list[os.DirEntry[str]]:
    return [entry for sub in os.scandir(folder) if sub.is_dir() for entry in os.scandir(sub.path) if entry.is_file()]


_WORKER: dict[str, np.ndarray] = {}


def _worker_init(images: np.ndarray, labels: np.ndarray) -> None:
    _WORKER.update(images=images, labels=labels)


def _generate_chunk(folder: Path, start: int, stop: int) -> int:
    images, labels = _WORKER["images"], _WORKER["labels"]
    for i in range(start, stop):
        label = int(labels[i % len(labels)])
        path = folder / file_name(i, label)
        if path.is_file():  # a folder interrupted half-way is completed, not redone
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        data = make_jpeg(images[i % len(images)], np.random.default_rng([7, i]))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return stop - start


def make_jpeg(source: np.ndarray, rng: np.random.Generator) -> bytes:
    """One 28x28 image with noise, upscaled to a random size and aspect; gray a quarter of the time, else tinted.
    The noise is added before upscaling so the files stay small (smooth pixels compress well) yet all differ."""
    from PIL import Image

    noisy = np.clip(source.astype(np.float32) + rng.normal(0, 12, source.shape), 0, 255).astype(np.uint8)
    long_side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    aspect = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))  # width / height, 2:5 to 5:2
    width, height = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    image = Image.fromarray(noisy, "L").resize((max(MIN_SIDE, width), max(MIN_SIDE, height)),
                                               Image.Resampling.BILINEAR)
    if rng.random() >= 0.25:
        ink, paper = rng.uniform(0.3, 1.0, 3), rng.uniform(0.0, 0.3, 3)
        gray = np.asarray(image, dtype=np.float32)[..., None] / 255
        image = Image.fromarray(np.rint((paper + gray * (ink - paper)) * 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def write_manifest(folder: Path, labels: int, path: Path) -> Path:
    """A CSV naming every image: ``labels`` of them (seeded) with their class, a fifth of those held out as
    ``split=test`` (the file loop measures accuracy on the manifest's test items only), the rest blank."""
    files = sorted(f"{Path(e.path).parent.name}/{e.name}" for e in _walk_files(folder))
    chosen = np.random.default_rng(0).choice(len(files), size=min(labels, len(files)), replace=False).tolist()
    test = set(chosen[: len(chosen) // 5])
    rows = {i: f"{files[i].split('/')[0]},{'test' if i in test else 'pool'}" for i in chosen}
    lines = ["path,label,split"] + [f"{f},{rows.get(i, ',')}" for i, f in enumerate(files)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- one measured command -------------------------------------------------------------------------------------
def measured(command: Sequence[str], console: Path) -> tuple[int, float, float, float]:
    """Exit code, wall seconds, the child's own peak resident MiB (``wait4``: this child alone) and when it
    started (epoch seconds)."""
    with open(console, "w") as out:
        launched, started = time.time(), time.perf_counter()
        child = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    return child.returncode, wall, usage.ru_maxrss / 1024, launched


def runner_case(name: str, overrides: Sequence[str], run_dir: Path, n: int) -> dict[str, Any]:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    console = run_dir.parent / f"{run_dir.name}.console.txt"
    command = [sys.executable, "-m", "runner", *overrides, f"hydra.run.dir={run_dir}"]
    started_load = load()
    rc, wall, child_peak, launched = measured(command, console)
    lines = console.read_text(errors="replace").splitlines()
    row: dict[str, Any] = {"case": name, "n": n, "command": " ".join(["python -m runner", *overrides]),
                           "load": started_load, "exit": rc, "wall_s": round(wall, 1),
                           "to_source_line_s": to_source_line(run_dir / "runner.log", launched),
                           "child_maxrss_mib": round(child_peak),
                           "console_lines": len(lines), "console_first": lines[:3], "console_last": lines[-3:]}
    row.update(source_line(lines, n))
    summary = run_dir / "summary.json"
    if summary.is_file():
        resources = json.loads(summary.read_text())["resources"]
        stages = resources["stages"].items()
        row["stages"] = {k: {"s": v["seconds"], "mib": round(v["peak_rss_mib"])} for k, v in stages}
        row["peak_mib"] = round(max(resources["peak_rss_mib"], child_peak))
    else:
        row["peak_mib"] = round(child_peak)
    row.update(pages(run_dir))
    return row


def to_source_line(log_file: Path, launched: float) -> float | None:
    """Seconds from the command's start to the folder source's console line (logged when the source is done):
    the import as a user waits for it, interpreter start and configuration included."""
    if not log_file.is_file():
        return None
    for line in log_file.read_text(errors="replace").splitlines():
        if " items (" in line and ("images/s" in line or "from the cache" in line):
            stamp = datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
            return round(stamp.timestamp() - launched, 1)
    return None


def pages(run_dir: Path) -> dict[str, Any]:
    """The size of each HTML page a run wrote, and how many images each embeds (the pages cap thumbnails)."""
    found = {}
    for page in [run_dir / "report.html", *sorted(run_dir.glob("to_label/*.html"))]:
        text = page.read_text(errors="replace")
        found[page.relative_to(run_dir).as_posix()] = {"mb": round(page.stat().st_size / 1e6, 2),
                                                       "images": text.count("data:image/")}
    return {"pages": found} if found else {}


def source_line(lines: Sequence[str], n: int) -> dict[str, Any]:
    """The folder source's console line and the import rate it states (read and decoded), where it states one."""
    import re

    for line in lines:
        if f"{n:,} items" in line and ("images/s" in line or "from the cache" in line):
            rate = re.search(r"\(([\d,]+) images/s", line)
            return {"source_line": line.strip(), "source_rate": int(rate.group(1).replace(",", "")) if rate else None}
    return {}


def cases(folder: Path, cache: Path, manifest: Path, threads: int) -> dict[str, list[str]]:
    base = ["project=folder", f"project.source.path={folder}", f"project.source.cache_dir={cache}",
            f"threads={threads}", "loop.rounds=1"]
    return {
        "import": [*base, "acquisition=random"],
        "import_cached": [*base, "acquisition=random"],
        "quality": [*base, "acquisition=random", "metrics=quality"],
        "round": list(base),
        "file_loop": [*base, f"project.source.manifest={manifest}", "loop.mode=human", "act=files"],
    }


# --- where an import's time goes ------------------------------------------------------------------------------
def profile(folder: Path, sample: int) -> dict[str, float]:
    """Milliseconds per file of each step of the source's import, one thread, over ``sample`` files: reading,
    hashing, the header, and letterboxing split into decode (with ``draft``) and the rest (resize, copy)."""
    from PIL import Image

    from plugins.sources.folder import Canvas, letterbox

    files = sorted(e.path for e in _walk_files(folder))[:sample]
    canvas = Canvas(28, 28, False)
    blobs = [Path(f).read_bytes() for f in files]  # warm the page cache so reading is not counted twice

    def decode_only(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft(None, (28, 28))
            opened.convert("RGB")

    def header(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as opened:
            _ = opened.mode, opened.size

    steps: dict[str, Callable[[bytes], Any]] = {
        "sha256": lambda d: hashlib.sha256(d).hexdigest(),
        "header": header,
        "decode (draft)": decode_only,
        "letterbox (decode + resize + copy)": lambda d: letterbox(d, canvas),
    }
    found = {"read (page cache)": _per_file(lambda f: Path(f).read_bytes(), files)}
    found.update({name: _per_file(step, blobs) for name, step in steps.items()})
    found["mean file KB"] = sum(len(b) for b in blobs) / len(blobs) / 1e3
    return found


def _per_file(step: Callable[[Any], Any], items: Sequence[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        step(item)
    return round((time.perf_counter() - started) / len(items) * 1e3, 3)


# --- the report -----------------------------------------------------------------------------------------------
def load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    kept = ""
    if path.is_file():
        text = path.read_text()
        kept = text[text.index(FINDINGS):] if FINDINGS in text else ""
    rows = {r["case"]: r for r in result["rows"]}
    lines = [
        "# A folder of images through the runner (`project=folder`)", "",
        "```", f"python -m benchmarks.bench_folder --n {result['n']}", "```", "",
        f"{result['date']}, {result['machine']}; load average at the start {result['load_before']}, at the end "
        f"{result['load_after']}. The folder: {folder_line(result['folder'])}", "",
        *CASES_TEXT, "",
        *case_table(rows), "", *targets(rows, result["n"]), "", *console_section(rows), "",
        *stage_table(rows), "", *profile_section(result.get("profile")), "",
    ]
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


CASES_TEXT = [
    "Each case is one `python -m runner project=folder ...` command (below) in a fresh run directory, on 2 threads.",
    "`import`: into an empty cache; `import_cached`: the same command again. The runner has no import-only command,",
    "so both also run one round of `acquisition=random` (the source's rate is its own console line's; the seconds",
    "to that line include Python's start-up and the configuration). `quality`: the same with `metrics=quality`, whose",
    "image metrics read the originals. `round`: one simulated round of the default strategy, labels from the class",
    "sub-folders. `file_loop`: round 0 of `loop.mode=human act=files` with a manifest labelling `--labels` items",
    "(500 by default, a fifth of them `split=test`), the rest unlabelled. Peak: the larger of the run's own",
    "summary.json (the runner resets the kernel's high-water mark at each stage) and the child's `ru_maxrss`",
    "from `wait4`.",
]


def folder_line(folder: dict[str, Any]) -> str:
    each = folder["bytes"] / folder["files"] / 1e3
    return (f"{folder['files']:,} JPEG files, {folder['bytes'] / 1e9:.2f} GB ({each:.1f} KB each on average), at "
            f"`{folder['path']}`.")


def case_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = ["| case | load (1, 5, 15 min) | exit | wall s | source's rate (images/s) | s to the source's line "
           "(images/s) | peak MiB | report.html MB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        rate, until = row.get("source_rate"), row.get("to_source_line_s")
        report = row.get("pages", {}).get("report.html", {}).get("mb", "-")
        waited = f"{until:.1f} ({row['n'] / until:,.0f})" if until else "-"
        out.append(f"| {name} | {row.get('load', '-')} | {row['exit']} | {row['wall_s']:,.1f} | "
                   f"{f'{rate:,}' if rate else 'cache'} | {waited} | {row['peak_mib']:,} | {report} |")
    return out


def targets(rows: dict[str, dict[str, Any]], n: int) -> list[str]:
    first = rows.get("import")
    if first is None:
        return []
    rate = first.get("source_rate") or 0
    megabytes = {name: row["peak_mib"] * 2**20 / 1e6 for name, row in rows.items()}
    peak = max(megabytes.values())
    missed = "; ".join(f"missed by {name}: {mb:,.0f} MB, {mb - MEMORY_TARGET_MB:,.0f} MB over"
                       for name, mb in megabytes.items() if mb >= MEMORY_TARGET_MB)
    verdict = [f"- import: {rate:,} images/s against at least {IMAGE_TARGET_TEXT}: "
               f"{'met' if rate >= IMPORT_TARGET else f'missed by {IMPORT_TARGET - rate:,} images/s'};",
               f"- peak memory, the largest of every case: {peak:,.0f} MB against under {MEMORY_TARGET_MB:,} MB: "
               f"{missed or 'met'}."]
    return ["Targets (issue 21, on 2 cores):", "", *verdict]


IMAGE_TARGET_TEXT = f"{IMPORT_TARGET:,} a second"


def console_section(rows: dict[str, dict[str, Any]]) -> list[str]:
    out = ["## What a round leaves a user"]
    for name in ("round", "file_loop"):
        row = rows.get(name)
        if row is None:
            continue
        shown = "; ".join(f"`{page}` {found['mb']} MB ({found['images']} embedded images)"
                          for page, found in row.get("pages", {}).items())
        out += ["", f"{name}: `{row['command']}`", "",
                f"{row['console_lines']} console lines; {shown or 'no pages'}. First and last lines:", "", "```",
                *row["console_first"], "...", *row["console_last"], "```"]
    return out


def stage_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    found = dict.fromkeys(stage for row in rows.values() for stage in row.get("stages", {}))
    names = sorted(found, key=lambda stage: int(stage.rsplit(":", 1)[1]))  # by round, in the order first run
    out = ["## Stages (seconds / peak MiB, from each run's summary.json)", "",
           "| stage | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for stage in names:
        cells = [rows[c].get("stages", {}).get(stage) for c in rows]
        out.append(f"| {stage} | " + " | ".join("-" if s is None else f"{s['s']:.1f} / {s['mib']:,}" for s in cells)
                   + " |")
    return out


def profile_section(found: dict[str, float] | None) -> list[str]:
    if not found:
        return []
    out = ["## Where one file's import goes (one thread, ms per file)", "", "| step | ms |", "|---|---:|"]
    return out + [f"| {name} | {value:.3f} |" for name, value in found.items()]


# --- the command line -----------------------------------------------------------------------------------------
def previous_rows(path: Path, n: int) -> dict[str, dict[str, Any]]:
    """The rows of an earlier result for the same ``n``, so that ``--only`` replaces some cases and keeps the rest."""
    if not path.is_file():
        return {}
    found = json.loads(path.read_text())
    return {row["case"]: row for row in found["rows"]} if found.get("n") == n else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, help="where the images are made (default /tmp/folder{n/1000}k)")
    parser.add_argument("--labels", type=int, default=500, help="items the round's manifest labels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_folder"), help="run directories and caches")
    parser.add_argument("--only", nargs="*", help="cases to run (import, import_cached, quality, round, file_loop)")
    parser.add_argument("--profile", type=int, metavar="FILES", help="only profile the import over FILES files")
    parser.add_argument("--table", action="store_true", help="only rebuild --md from --json")
    parser.add_argument("--generate", action="store_true", help="only make the folder")
    parser.add_argument("--json", type=Path, default=HERE / "folder.json")
    parser.add_argument("--md", type=Path, default=HERE / "folder.md")
    args = parser.parse_args()
    if args.table:
        write_markdown(json.loads(args.json.read_text()), args.md)
        return
    folder = args.folder or default_folder(args.n)
    made = ensure_folder(folder, args.n, args.threads)
    if args.generate:
        print(json.dumps(made))
        return
    if args.profile:
        print(json.dumps(profile(folder, args.profile), indent=1))
        return
    out = args.out / f"n{args.n}"
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    if not args.only or "import" in args.only:
        shutil.rmtree(cache, ignore_errors=True)  # the first import starts from an empty cache
    manifest = write_manifest(folder, args.labels, out / "manifest.csv")
    result: dict[str, Any] = {"n": args.n, "date": datetime.date.today().isoformat(), "machine": machine(),
                              "load_before": load(), "folder": {**made, "path": str(folder)}, "rows": []}
    earlier = previous_rows(args.json, args.n) if args.only else {}
    for name, overrides in cases(folder, cache, manifest, args.threads).items():
        if args.only and name not in args.only:
            continue
        earlier[name] = row = runner_case(name, overrides, out / name, args.n)
        print(json.dumps({k: v for k, v in row.items() if k != "stages"}), flush=True)
    result["rows"] = list(earlier.values())
    result["load_after"] = load()
    result["profile"] = profile(folder, min(args.n, 2_000))
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, args.md)


if __name__ == "__main__":
    main()
