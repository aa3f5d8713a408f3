"""The MNIST CNN of Gal, Islam & Ghahramani (2017), split so MC dropout only re-runs the part with dropout."""

from __future__ import annotations

import torch
from torch import nn


class GalCNN(nn.Module):
    """conv(32) - relu - conv(32) - relu - maxpool(2) - dropout(0.25) - dense(128) - relu - dropout(0.5) - dense(C).

    ``trunk`` has no dropout, so it is deterministic; ``head`` holds both dropout layers. MC dropout samples
    therefore need the trunk once and the (cheap) head T times, which gives exactly the same distribution
    as T full passes.
    """

    def __init__(
        self,
        n_classes: int,
        input_shape: tuple[int, int, int],
        filters: int = 32,
        kernel_size: int = 4,
        hidden: int = 128,
        conv_dropout: float = 0.25,
        dense_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"GalCNN takes images (channels, height, width), got rows of shape {tuple(input_shape)}; "
                             "for embeddings (model.input=embeddings) use model=mlp")
        channels, height, width = input_shape
        out_h = (height - 2 * (kernel_size - 1)) // 2
        out_w = (width - 2 * (kernel_size - 1)) // 2
        if out_h < 1 or out_w < 1:
            raise ValueError(f"images of {height}x{width} are too small for two {kernel_size}x{kernel_size} convs")
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, filters, kernel_size),
            nn.ReLU(),
            nn.Conv2d(filters, filters, kernel_size),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.penultimate = nn.Sequential(
            nn.Dropout(conv_dropout),
            nn.Linear(filters * out_h * out_w, hidden),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Dropout(dense_dropout), nn.Linear(hidden, n_classes))
        self.head = nn.Sequential(self.penultimate, self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch types a module call as returning Any; every layer here maps a tensor to a tensor.
        logits: torch.Tensor = self.head(self.trunk(x))
        return logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (call in eval mode)."""
        activations: torch.Tensor = self.penultimate(self.trunk(x))
        return activations
