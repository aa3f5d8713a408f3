"""An encoder trained on the pool's own images, without labels: SimCLR (Chen et al., ICML 2020).

Why SimCLR: it needs nothing but the images and two random views of each (no momentum encoder, queue or
predictor to tune, unlike MoCo, BYOL or DINO), its loss is stable at the small batches a CPU affords when the
temperature is moderate, and TypiClust (Hacohen et al. 2022) and ProbCover (Yehuda et al. 2022) report their
cold-start gains on SimCLR features. The network is small on purpose (three convolution blocks, global average
pooling), so that 5,000 images of 28x28 train in about two minutes on two CPU cores.

Training: each step takes ``batch_size`` images, makes two views of each by a random affine warp (rotation,
scale, shift, shear) and a random brightness and contrast change, embeds both, projects them with a two-layer head,
and minimises the NT-Xent loss

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) )

averaged over both views of every image of the batch (sim is the cosine similarity, tau the ``temperature``).
The embeddings are the encoder's output before the projection head, L2-normalised (the space a nearest
neighbour, k-means or a linear head reads best), for every item in eval mode.

Deterministic for a seed on one machine: every draw comes from one seeded torch Generator, and the run fixes the
number of threads. The loss per epoch is kept in ``loss_curve_`` for the report.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from tqdm import tqdm

from plugins.arrays import Array
from plugins.models.torch_model import as_tensor

log = logging.getLogger("runner")


class SmallEncoder(nn.Module):
    """conv-BN-ReLU blocks of ``width``, 2x``width`` and 4x``width`` channels, the first two followed by 2x2 max
    pooling, then global average pooling: any image size, output 4x``width`` features."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()

        def block(inputs: int, outputs: int) -> list[nn.Module]:
            return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]

        self.layers = nn.Sequential(
            *block(channels, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_features = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.layers(x)
        return features


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """The NT-Xent loss of SimCLR for two batches of projections, row i of each being views of one image."""
    z = functional.normalize(torch.cat([first, second]), dim=1)
    n = len(first)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # an item is not its own negative
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return functional.cross_entropy(similarity, positives)


def as_batch(images: Any) -> torch.Tensor:
    """(n, H, W) or (n, H, W, C) images -> (n, C, H, W) float32; rows of vectors are refused (no pixels to view)."""
    batch = as_tensor(images)
    if batch.ndim != 4:
        raise ValueError(f"self-supervised training needs images (n, H, W[, C]), got shape {tuple(batch.shape)}")
    return batch


class SelfSupervised:
    """``fit_transform(images)``: train a SimCLR encoder on ``images`` and return their (n, 4*width) embeddings.

    ``epochs`` passes over the images, but at most ``max_steps`` optimiser steps in all, so a large pool trains in
    bounded time (60,000 images: the step cap, not the epochs, decides). ``rotation`` (degrees), ``scale`` (the
    largest relative zoom in or out), ``shift`` (fraction of the image), ``shear`` (degrees) and ``jitter``
    (relative brightness and contrast change) bound the random views; ``flip`` adds horizontal flips (right for
    photos and clothes, wrong for digits). ``seed`` draws the initial weights, the batches and the views.
    """

    # Training takes minutes: the runner keeps the result between runs (compute.embedding_cache).
    worth_caching = True

    def __init__(self, epochs: int = 60, max_steps: int = 1200, batch_size: int = 256, width: int = 32,
                 projection_dim: int = 64, temperature: float = 1.0, lr: float = 2e-3, weight_decay: float = 1e-5,
                 rotation: float = 20.0, scale: float = 0.35, shift: float = 0.2, shear: float = 10.0,
                 jitter: float = 0.4, flip: bool = False, view_scale: float = 0.6, seed: int = 0,
                 embed_batch_size: int = 1024) -> None:
        if int(epochs) < 1 or int(max_steps) < 1:
            raise ValueError(f"epochs and max_steps must be at least 1, got {epochs} and {max_steps}")
        if int(batch_size) < 2:
            raise ValueError(f"batch_size must be at least 2 (an image needs negatives), got {batch_size}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.epochs, self.max_steps, self.batch_size = int(epochs), int(max_steps), int(batch_size)
        self.width, self.projection_dim = int(width), int(projection_dim)
        self.temperature, self.lr, self.weight_decay = float(temperature), float(lr), float(weight_decay)
        self.rotation, self.scale, self.shift, self.shear = float(rotation), float(scale), float(shift), float(shear)
        self.jitter, self.flip = float(jitter), bool(flip)
        if not 0 < float(view_scale) <= 1:
            raise ValueError(f"view_scale must be in (0, 1], got {view_scale}")
        self.view_scale = float(view_scale)
        self.seed, self.embed_batch_size = int(seed), int(embed_batch_size)
        self.loss_curve_: list[float] = []
        self.encoder_: SmallEncoder | None = None

    def fit_transform(self, images: Any) -> Array:
        self.fit(images)
        return self.transform(images)

    def fit(self, images: Any) -> SelfSupervised:
        n = len(images)
        if n < 2:
            raise ValueError(f"self-supervised training needs at least 2 images, got {n}")
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            sample = as_batch(images[:1])
            # channels_last: the layout CPU convolution kernels run fastest on (about 1.6x here).
            encoder = SmallEncoder(sample.shape[1], self.width)
            encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            head = nn.Sequential(nn.Linear(encoder.out_features, encoder.out_features), nn.ReLU(),
                                 nn.Linear(encoder.out_features, self.projection_dim))
        parameters = list(encoder.parameters()) + list(head.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay)
        batch = min(self.batch_size, n)
        steps_per_epoch = n // batch  # the last partial batch is dropped: a tiny batch has too few negatives
        total = min(self.epochs * steps_per_epoch, self.max_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))  # cosine decay to 0
        encoder.train()
        head.train()
        self.loss_curve_ = []
        step = 0
        with tqdm(total=total, desc="self-supervised", unit="step", leave=False, disable=None) as bar:
            while step < total:
                order = torch.randperm(n, generator=generator)
                losses = []
                for start in range(0, steps_per_epoch * batch, batch):
                    if step >= total:
                        break
                    rows = np.sort(order[start:start + batch].numpy())
                    x = as_batch(images[rows])
                    first, second = self._view(x, generator), self._view(x, generator)
                    loss = nt_xent(head(encoder(first)), head(encoder(second)), self.temperature)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
                    step += 1
                    bar.update(1)
                self.loss_curve_.append(float(np.mean(losses)))
        encoder.eval()
        self.encoder_ = encoder
        log.info(f"self-supervised encoder: {step} steps over {len(self.loss_curve_)} epochs, "
                 f"loss {self.loss_curve_[0]:.3f} -> {self.loss_curve_[-1]:.3f}")
        return self

    def transform(self, images: Any) -> Array:
        if self.encoder_ is None:
            raise RuntimeError("the encoder must be trained before it embeds")
        out = np.empty((len(images), self.encoder_.out_features), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(images), self.embed_batch_size):
                x = as_batch(images[start:start + self.embed_batch_size])
                out[start:start + len(x)] = functional.normalize(self.encoder_(x), dim=1).numpy()
        return out

    def _view(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random affine warp (zero fill) and brightness/contrast change of every image of ``x``."""
        n = len(x)

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2 - 1) * bound

        angle, shear = torch.deg2rad(uniform(self.rotation)), torch.deg2rad(uniform(self.shear))
        zoom = 1 + uniform(self.scale)
        mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = cos / zoom * mirror
        theta[:, 0, 1] = (-sin + torch.tan(shear) * cos) / zoom
        theta[:, 1, 0] = sin / zoom * mirror
        theta[:, 1, 1] = (cos + torch.tan(shear) * sin) / zoom
        theta[:, :, 2] = torch.stack([uniform(2 * self.shift), uniform(2 * self.shift)], dim=1)
        # The view is sampled at view_scale of the image's size: a random resized crop, at a fraction of the cost.
        height, width = (max(4, round(side * self.view_scale)) for side in x.shape[2:])
        grid = functional.affine_grid(theta, [n, x.shape[1], height, width], align_corners=False)
        warped = functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
        contrast = (1 + uniform(self.jitter)).view(n, 1, 1, 1)
        brightness = (uniform(self.jitter) * 0.25).view(n, 1, 1, 1)
        mean = warped.mean(dim=(1, 2, 3), keepdim=True)
        view = ((warped - mean) * contrast + mean + brightness).clamp(0, 1)
        return view.contiguous(memory_format=torch.channels_last)
