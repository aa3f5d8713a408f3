"""Embedders from pretrained weights on local disk (CLIP or any other image encoder).

Nothing can be downloaded at run time, so the weights must already be a file on this machine; a missing file
is reported when the embedder is built from the config, before any stage runs.

The file is a ``torch.export`` program (``torch.export.save``) that maps a float32 batch of shape (b, C, H, W)
in [0, 1] to (b, d) embeddings; exporting fixes the network in the file, so no model code is needed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plugins.errors import InputError


def check_available(path: str) -> None:
    """Raise :class:`InputError` naming ``path`` unless it is an existing file."""
    weights = Path(str(path)).expanduser()
    if not weights.is_file():
        reason = "is a directory, not a file" if weights.is_dir() else "does not exist"
        raise InputError(
            f"embedder.weights_path: pretrained embedder weights file {reason}: {weights} (weights cannot be "
            "downloaded here; copy the exported model file to this path or pick embedder=pixels)"
        )


class LocalWeights:
    """Embed images with the exported network at ``weights_path``; construction fails if the file is absent."""

    def __init__(self, weights_path: str, batch_size: int = 256) -> None:
        check_available(weights_path)
        self.path = str(Path(str(weights_path)).expanduser())
        self.batch_size = int(batch_size)
        self._module: Any = None

    def _load(self) -> Any:
        if self._module is None:
            import torch  # imported here so the metric and filter plugins never pay for torch

            self._module = torch.export.load(self.path).module()
        return self._module

    def fit_transform(self, images: np.ndarray) -> np.ndarray:
        """(n, H, W) or (n, H, W, C) images in [0, 1] -> (n, d) float32 embeddings, batch by batch."""
        import torch

        x = np.asarray(images, dtype=np.float32)
        # Channels first, as torch vision networks expect; grayscale gets a single channel axis.
        x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
        module = self._load()
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size]))
                parts.append(module(batch).reshape(len(batch), -1).numpy().astype(np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
