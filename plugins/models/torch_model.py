"""Any torch classification module as a runner model, with MC-dropout samples.

The module is given as a factory (Hydra ``_partial_: true``) called as ``module(n_classes=C, input_shape=shape)``,
``shape`` being ``(ch, H, W)`` for images and ``(d,)`` for (n, d) embedding rows.
A module that has ``trunk`` and ``head`` sub-modules, the trunk free of dropout, gets fast MC dropout: the trunk
runs once and only the head is sampled. Any other module is sampled by T full stochastic passes.
A module with an ``adapt(inputs)`` method is handed the training inputs once before a fresh start's first step,
to fix statistics it keeps as buffers (an input scale); a warm start takes them from the previous model instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from plugins.arrays import Array

log = logging.getLogger("runner")


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
        warm_start: bool = False,
        warm_epochs: int | None = None,
    ) -> None:
        """``weight_decay_per_label``: divide ``weight_decay`` by the number of labelled items, as a prior whose
        weight shrinks while the data grows does (Gal et al. 2017 use c / N). ``predict_mc_samples``: T > 0 makes
        ``predict_proba`` the mean of T MC-dropout passes (the predictive mean of the approximate posterior)
        instead of one pass with dropout off. ``augment_shift``: s > 0 moves every training image of a batch by a
        random whole number of pixels in [-s, s] each way (zero fill), a fresh draw each time it is used; inputs of
        shape (n, d) have no pixels, so ``fit`` refuses them with s > 0 rather than train without the augmentation
        the config asked for.

        ``warm_start``: ``fit(X, y, warm_from=previous)`` starts from the weights (and buffers) of ``previous``, the
        last round's fitted model, when its module has the same type, n_classes and tensor shapes; otherwise, and
        always when ``warm_start`` is false, from a fresh initialisation seeded by ``random_state``. ``previous`` is
        read, never changed. ``warm_epochs``: the epochs of a warm round; None trains a warm round on the same
        schedule as a fresh one (max of ``epochs`` and what ``min_steps`` needs), a number trains exactly that many
        epochs (``min_steps`` is for taking a random initialisation far enough, which a warm start has done).
        The default keeps the schedule, as the libraries do: modAL's ``teach`` refits with the same fit arguments
        (a Keras network from its current weights, so a warm start on an unchanged schedule), and baal's examples
        load the initial weights back and train the same epochs every step. Shortening it saves less than it seems:
        networks warm-started on a growing data set generalise worse than fresh ones trained as long (Ash & Adams,
        "On warm-starting neural network training", NeurIPS 2020), and warm-started fine-tuning across active
        learning rounds neither sped training up nor avoided forgetting (Das et al., "Accelerating batch active
        learning using continual learning techniques", 2023). A smaller ``warm_epochs`` is for when time matters more.
        The optimizer starts fresh every round: its moments were estimated on the previous round's labels and batch
        order, and keeping them would put optimizer state into every pickled model; a round depends on the previous
        model's weights alone."""
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
        self.warm_start = bool(warm_start)
        if warm_epochs is not None and int(warm_epochs) < 0:
            raise ValueError(f"warm_epochs must be null (the fresh schedule) or a number of epochs, got {warm_epochs}")
        self.warm_epochs = None if warm_epochs is None else int(warm_epochs)
        self.module_: nn.Module | None = None

    # --- training ---------------------------------------------------------------------------------
    def fit(self, X: Array, y: Array, warm_from: TorchClassifier | None = None) -> TorchClassifier:
        """Train on images (n, H, W[, C]) or embedding rows (n, d) with class indices ``y``; ``warm_from``: the
        previous round's fitted model, used only with ``warm_start`` (see the constructor)."""
        inputs = as_tensor(X)
        if inputs.ndim == 2 and self.augment_shift:
            raise ValueError(f"augment_shift={self.augment_shift} moves images by pixels, but the inputs are "
                             f"(n, d) rows {tuple(inputs.shape)}: set augment_shift to 0")
        targets = torch.as_tensor(np.asarray(y), dtype=torch.long)
        generator = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            module = self.module_factory(n_classes=self.n_classes, input_shape=tuple(inputs.shape[1:]))
            start = self._warm_weights(module, warm_from)
            if start is not None:
                module.load_state_dict(start)  # copies into the new module's own tensors: ``warm_from`` is kept as is
            elif callable(adapt := getattr(module, "adapt", None)):
                adapt(inputs)
            self._train(module, inputs, targets, self._epochs(len(inputs), warm=start is not None), generator)
        module.eval()
        self.module_ = module
        return self

    def _train(self, module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, epochs: int,
               generator: torch.Generator) -> None:
        decay = self.weight_decay / len(inputs) if self.weight_decay_per_label else self.weight_decay
        optimizer = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=decay)
        loss_fn = nn.CrossEntropyLoss()
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

    def _epochs(self, n: int, warm: bool) -> int:
        if warm and self.warm_epochs is not None:
            return self.warm_epochs
        steps_per_epoch = max(1, math.ceil(n / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))

    def _warm_weights(self, module: nn.Module, previous: object) -> Mapping[str, torch.Tensor] | None:
        """The previous model's state to start from, or None for a fresh start (said once when it was asked for)."""
        if not self.warm_start or previous is None:
            return None
        reason = _mismatch(module, previous, self.n_classes)
        if reason is None and isinstance(previous, TorchClassifier) and previous.module_ is not None:
            return previous.module_.state_dict()
        log.warning(f"warm_start: {reason}; this round starts from a fresh initialisation")
        return None

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
            yield as_tensor(X[start : start + self.predict_batch_size])


def _shifted(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each (C, H, W) image moved by its own random offset in [-shift, shift] on both axes, zeros shifted in."""
    if not shift:
        return images
    height, width = images.shape[-2:]
    padded = nn.functional.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (len(images), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


def _mismatch(module: nn.Module, previous: object, n_classes: int) -> str | None:
    """Why ``previous`` cannot seed ``module`` (a fresh, unfitted one), or None when it can."""
    if not isinstance(previous, TorchClassifier):
        return f"the previous model is a {type(previous).__name__}, not a TorchClassifier"
    if previous.module_ is None:
        return "the previous model was never fitted"
    if previous.n_classes != n_classes:
        return f"the previous model has {previous.n_classes} classes, this one {n_classes}"
    if type(previous.module_) is not type(module):
        return f"the previous module is a {type(previous.module_).__name__}, this one a {type(module).__name__}"
    old = {key: tuple(value.shape) for key, value in previous.module_.state_dict().items()}
    new = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    if old != new:
        differing = sorted(set(old.items()) ^ set(new.items()))[0][0]
        return f"the previous module's tensors differ from this one's (first at {differing})"
    return None


def as_tensor(X: Array) -> torch.Tensor:
    """(n, d) rows stay (n, d); (n, H, W) -> (n, 1, H, W); (n, H, W, C) -> (n, C, H, W); float32."""
    array = np.asarray(X, dtype=np.float32)
    if array.ndim == 2:
        pass
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"expected rows (n, d) or images (n, H, W) or (n, H, W, C), got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array))
