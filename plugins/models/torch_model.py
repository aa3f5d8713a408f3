"""Any torch classification module as a runner model, with MC-dropout samples.

The module is given as a factory (Hydra ``_partial_: true``) called as ``module(n_classes=C, input_shape=(ch, H, W))``.
A module that has ``trunk`` and ``head`` sub-modules, the trunk free of dropout, gets fast MC dropout: the trunk
runs once and only the head is sampled. Any other module is sampled by T full stochastic passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from plugins.arrays import Array


class TorchClassifier:
    def __init__(
        self,
        module: Callable[..., nn.Module],
        n_classes: int,
        random_state: int = 0,
        epochs: int = 50,
        min_steps: int = 0,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        weight_decay_per_label: bool = False,
        predict_mc_samples: int = 0,
        predict_batch_size: int = 1024,
        augment_shift: int = 0,
    ) -> None:
        """``weight_decay_per_label``: divide ``weight_decay`` by the number of labelled items, as a prior whose
        weight shrinks while the data grows does (Gal et al. 2017 use c / N). ``predict_mc_samples``: T > 0 makes
        ``predict_proba`` the mean of T MC-dropout passes (the predictive mean of the approximate posterior)
        instead of one pass with dropout off. ``augment_shift``: s > 0 moves every training image of a batch by a
        random whole number of pixels in [-s, s] each way (zero fill), a fresh draw each time it is used."""
        if int(predict_mc_samples) < 0:
            raise ValueError(f"predict_mc_samples must be 0 (off) or a number of passes, got {predict_mc_samples}")
        self.module_factory = module
        self.n_classes = n_classes
        self.random_state = int(random_state)
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.weight_decay_per_label = bool(weight_decay_per_label)
        self.predict_mc_samples = int(predict_mc_samples)
        self.predict_batch_size = predict_batch_size
        if int(augment_shift) < 0:
            raise ValueError(f"augment_shift must be 0 (off) or a number of pixels, got {augment_shift}")
        self.augment_shift = int(augment_shift)
        self.module_: nn.Module | None = None

    # --- training ---------------------------------------------------------------------------------
    def fit(self, X: Array, y: Array) -> TorchClassifier:
        inputs = _as_tensor(X)
        targets = torch.as_tensor(np.asarray(y), dtype=torch.long)
        generator = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            module = self.module_factory(n_classes=self.n_classes, input_shape=tuple(inputs.shape[1:]))
            decay = self.weight_decay / len(inputs) if self.weight_decay_per_label else self.weight_decay
            optimizer = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=decay)
            loss_fn = nn.CrossEntropyLoss()
            steps_per_epoch = max(1, -(-len(inputs) // self.batch_size))
            epochs = max(self.epochs, -(-self.min_steps // steps_per_epoch))
            module.train()
            for _ in tqdm(range(epochs), desc="train", unit="epoch", leave=False, disable=None):
                order = torch.randperm(len(inputs), generator=generator)
                for start in range(0, len(inputs), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    seen = _shifted(inputs[batch], self.augment_shift, generator)
                    loss = loss_fn(module(seen), targets[batch])
                    loss.backward()
                    optimizer.step()
        module.eval()
        self.module_ = module
        return self

    # --- prediction -------------------------------------------------------------------------------
    def predict_proba(self, X: Array) -> Array:
        if self.predict_mc_samples:
            return np.asarray(self.predict_proba_samples(X, self.predict_mc_samples).mean(axis=0))
        module = self._fitted()
        module.eval()
        with torch.no_grad():
            out = [torch.softmax(module(chunk), dim=1) for chunk in self._chunks(X)]
        return torch.cat(out).double().numpy()

    def predict_proba_samples(self, X: Array, T: int) -> Array:
        """(T, n, C) class probabilities under T independent dropout masks."""
        module = self._fitted()
        # getattr, not a protocol: nn.Module hands out sub-modules through __getattr__, which an isinstance check
        # against a protocol does not call on Python 3.12+.
        trunk, head = getattr(module, "trunk", None), getattr(module, "head", None)
        samples = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state + 1)
            for chunk in self._chunks(X):
                if trunk is not None and isinstance(head, nn.Module):
                    module.eval()
                    features = trunk(chunk)
                    head.train()
                    draws = [torch.softmax(head(features), dim=1) for _ in range(T)]
                else:
                    module.train()
                    draws = [torch.softmax(module(chunk), dim=1) for _ in range(T)]
                samples.append(torch.stack(draws))
        module.eval()
        return torch.cat(samples, dim=1).double().numpy()

    def embed(self, X: Array) -> Array:
        """Penultimate-layer activations when the module exposes ``embed``, else its logits."""
        module = self._fitted()
        module.eval()
        forward: Callable[[torch.Tensor], torch.Tensor] = getattr(module, "embed", module)
        with torch.no_grad():
            return torch.cat([forward(chunk) for chunk in self._chunks(X)]).double().numpy()

    def _fitted(self) -> nn.Module:
        if self.module_ is None:
            raise RuntimeError("the model must be fitted before it predicts")
        return self.module_

    def _chunks(self, X: Array) -> Iterator[torch.Tensor]:
        for start in range(0, len(X), self.predict_batch_size):
            yield _as_tensor(X[start : start + self.predict_batch_size])


def _shifted(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each (C, H, W) image moved by its own random offset in [-shift, shift] on both axes, zeros shifted in."""
    if not shift:
        return images
    height, width = images.shape[-2:]
    padded = nn.functional.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


def _as_tensor(X: Array) -> torch.Tensor:
    """(n, H, W) -> (n, 1, H, W); (n, H, W, C) -> (n, C, H, W); float32."""
    array = np.asarray(X, dtype=np.float32)
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"expected images of shape (n, H, W) or (n, H, W, C), got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))
