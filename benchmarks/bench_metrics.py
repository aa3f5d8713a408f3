"""Time every image metric over 60,000 28x28 images (Fashion-MNIST when installed, else synthetic).

    python benchmarks/bench_metrics.py [--repeats 3] [--n 60000]

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist/);
without it the images are seeded uniform noise of the same shape, and the report says which was used.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from plugins.sources.offline import read_idx

# Run from a checkout without installing it: the repository root goes first on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.embedders.pixels import PixelPCA  # noqa: E402
from plugins.metrics import invalid_items  # noqa: E402
from plugins.metrics.geometry import area, aspect_ratio  # noqa: E402
from plugins.metrics.intensity import brightness, contrast  # noqa: E402
from plugins.metrics.sharpness import blur, sharpness  # noqa: E402
from plugins.metrics.uniqueness import near_duplicate, uniqueness  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def load_images(n: int) -> tuple[np.ndarray, str]:
    if FASHION.is_file():
        pixels = read_idx(FASHION)[:n]
        return (pixels.astype(np.float32) / 255.0), f"Fashion-MNIST train ({FASHION})"
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28), dtype=np.float32), "synthetic uniform noise (Fashion-MNIST not installed)"


def timed(work: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds (CPU: all threads of this process; steadier on a shared machine)."""
    wall, cpu = [], []
    result = None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    images, source = load_images(args.n)
    print(f"images: {images.shape} {images.dtype}, {source}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"numpy {np.__version__}, python {platform.python_version()}; median of {args.repeats} runs\n")
    image_metrics = {
        "brightness": brightness, "contrast": contrast, "sharpness": sharpness, "blur": blur,
        "aspect_ratio": aspect_ratio, "area": area, "invalid_items": invalid_items,
    }
    print("| metric | wall s | CPU s | mean value |")
    print("|---|---:|---:|---:|")
    total_wall = total_cpu = 0.0
    for name, metric in image_metrics.items():
        wall, cpu, values = timed(lambda m=metric: m(images), args.repeats)
        total_wall += wall
        total_cpu += cpu
        mean = np.nanmean(np.asarray(values, dtype=np.float64))
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {mean:.6g} |")
    print(f"| **total, image metrics** | **{total_wall:.3f}** | **{total_cpu:.3f}** | |")

    wall, cpu, embeddings = timed(lambda: PixelPCA(50, random_state=0).fit_transform(images), 1)
    print(f"| PixelPCA(50) embedding (one run) | {wall:.3f} | {cpu:.3f} | |")
    wall, cpu, values = timed(lambda: uniqueness(embeddings), 1)
    print(f"| uniqueness on the embedding (one run) | {wall:.3f} | {cpu:.3f} | {np.nanmean(values):.4g} |")
    flagged = int(near_duplicate(embeddings, 0.03).sum())
    exact = int((values == 0).sum())
    print(f"\nnear-duplicates (<= 0.03): {flagged}; exact-duplicate copies (uniqueness 0): {exact}")


if __name__ == "__main__":
    main()
