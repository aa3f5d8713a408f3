"""Embedders from pretrained weights on local disk (CLIP or any other image encoder).

Nothing can be downloaded at run time, so the weights must already be a file on this machine; a missing file
is reported when the embedder is built from the config, before any stage runs.

The file is a ``torch.export`` program (``torch.export.save``) that maps a float32 batch of shape (b, C, H, W)
in [0, 1] to (b, d) embeddings; exporting fixes the network in the file, so no model code is needed here.
Whatever the encoder needs beyond that (resizing to its own input size, normalising with its mean and standard
deviation) belongs inside the exported module. The batch axis may be dynamic (exported with ``dynamic_shapes``)
or fixed: a program exported for exactly B images gets batches of B, the last one padded with blank images whose
embeddings are dropped. A grayscale image is repeated over the channels of an encoder that takes three.
README ("Pretrained embeddings") shows an export.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from plugins.arrays import Array
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


def input_shape(program: Any) -> tuple[int | None, ...] | None:
    """The shape the program's first input was exported with, None on each dynamic axis (None: not known)."""
    names = list(getattr(program.graph_signature, "user_inputs", ()))
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names[:1]:
            value = node.meta.get("val")
            if value is None:
                return None
            return tuple(s if isinstance(s, int) else None for s in value.shape)
    return None


class LocalWeights:
    """Embed images with the exported network at ``weights_path``; construction fails if the file is absent."""

    def __init__(self, weights_path: str, batch_size: int = 256) -> None:
        check_available(weights_path)
        self.path = str(Path(str(weights_path)).expanduser())
        if not zipfile.is_zipfile(self.path):  # what torch.export.save writes; checked before any stage runs
            raise InputError(
                f"embedder.weights_path: {self.path} is not a torch.export program; save one with "
                "torch.export.save (README: Pretrained embeddings)"
            )
        self.batch_size = int(batch_size)
        self._module: Any = None
        self._shape: tuple[int | None, ...] | None = None

    def _load(self) -> Any:
        if self._module is None:
            import torch  # imported here so the metric and filter plugins never pay for torch

            try:
                program = torch.export.load(self.path)
            except Exception as exc:  # torch raises many kinds for a file that is not an exported program
                raise InputError(
                    f"embedder.weights_path: {self.path} is not a torch.export program ({type(exc).__name__}); "
                    "save one with torch.export.save (README: Pretrained embeddings)"
                ) from None
            self._shape = input_shape(program)
            self._module = program.module()
        return self._module

    def _fit_input(self, x: Array) -> Array:
        """``x`` (n, C, H, W) made to fit the exported input: channels repeated for a colour encoder, or a
        one-line refusal naming both shapes."""
        shape = self._shape
        if shape is None or len(shape) != 4:
            return x
        channels, height, width = shape[1:]
        if channels == 3 and x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        wanted = ["b" if shape[0] is None else str(shape[0])]
        wanted += ["?" if s is None else str(s) for s in shape[1:]]
        mismatch = any(s is not None and s != got for s, got in zip(shape[1:], x.shape[1:], strict=True))
        if mismatch:
            raise InputError(
                f"embedder.weights_path: {self.path} takes images of shape ({', '.join(wanted)}), these are "
                f"({', '.join(map(str, x.shape[1:]))}); set project.source.image_size (and grayscale) to match, or "
                "export the encoder with its own resizing inside (README: Pretrained embeddings)"
            )
        return x

    def fit_transform(self, images: Array) -> Array:
        """(n, H, W) or (n, H, W, C) images in [0, 1] -> (n, d) float32 embeddings, batch by batch."""
        import torch

        x = np.asarray(images, dtype=np.float32)
        # Channels first, as torch vision networks expect; grayscale gets a single channel axis.
        x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
        module = self._load()
        x = self._fit_input(x)
        fixed = self._shape[0] if self._shape else None
        step = fixed or self.batch_size
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), step):
                chunk = x[start : start + step]
                n = len(chunk)
                if fixed is not None and n < fixed:
                    # A program exported for exactly `fixed` images: pad with blanks and drop their embeddings.
                    chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), dtype=np.float32)])
                batch = torch.from_numpy(np.ascontiguousarray(chunk))
                out = module(batch).reshape(len(batch), -1)[:n]
                parts.append(out.numpy().astype(np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
