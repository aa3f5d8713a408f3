"""A small network on embedding rows (n, d), split like the CNN so MC dropout only re-runs the part with dropout."""

from __future__ import annotations

import math

import torch
from torch import nn


class InputScale(nn.Module):
    """x -> (x - mean) * scale: one centre and one scalar scale, fixed by ``adapt`` from the training rows.

    One scalar for all features, not one per feature, because an embedding's geometry is its information: PCA
    components carry more variance the more they explain, and a per-feature standardisation would lift the
    trailing, noisy ones to the same footing, from statistics a few dozen labelled rows estimate badly. The scale
    sets the mean squared distance of the training rows to their centre to d (unit variance per feature on
    average), where PyTorch's default fan-in initialisation of a Linear layer gives pre-activations of order one:
    the same learning rate and weight decay then suit L2-normalised embeddings (rows of norm 1) and pixel PCA
    (norms in the hundreds). Both are buffers, so they travel with the weights into a pickle or a warm start.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(()))

    def adapt(self, rows: torch.Tensor) -> None:
        """Centre and scale from the training rows (n, d); rows with no spread (one row, duplicates) keep scale 1."""
        data = rows.detach().double()
        mean = data.mean(dim=0)
        spread = float((data - mean).square().sum(dim=1).mean())
        # The floor keeps near-duplicate rows from blowing a rounding error up into the whole input range.
        energy = float(data.square().sum(dim=1).mean())
        scale = math.sqrt(data.shape[1] / spread) if spread > 1e-12 * energy and math.isfinite(spread) else 1.0
        self.mean.copy_(mean.float())
        self.scale.fill_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


class FeatureMLP(nn.Module):
    """scale - [dense(hidden) - relu] x depth - dropout - dense(C), on (n, d) rows.

    ``trunk`` (the scaling and the hidden layers) holds no dropout, so it is deterministic; ``head`` holds the
    dropout and the last layer. MC dropout samples therefore need the trunk once and the head T times. No batch or
    layer normalisation: batch statistics of a few labelled rows are noise and would make a prediction depend on
    its batch, and the fixed input scale (``adapt``, called by the classifier before a fresh start) already puts
    every embedder's rows on one scale.
    """

    def __init__(
        self,
        n_classes: int,
        input_shape: tuple[int, ...],
        hidden: int = 256,
        depth: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"FeatureMLP takes embedding rows (n, d), got items of shape {tuple(input_shape)}")
        if depth < 1 or hidden < 1:
            raise ValueError(f"FeatureMLP needs at least one hidden layer of one unit, got depth={depth}, "
                             f"hidden={hidden}")
        self.scaling = InputScale(input_shape[0])
        layers: list[nn.Module] = [self.scaling]
        width = input_shape[0]
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def adapt(self, rows: torch.Tensor) -> None:
        """Fix the input scale from the training rows (see :class:`InputScale`)."""
        self.scaling.adapt(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch types a module call as returning Any; every layer here maps a tensor to a tensor.
        logits: torch.Tensor = self.head(self.trunk(x))
        return logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (the last hidden layer's)."""
        activations: torch.Tensor = self.trunk(x)
        return activations
