"""From an acquisition config to scores or a batch: which inputs a function needs, and computing them once.

An acquisition function declares what it needs by its parameter names (see ``INPUTS``). A function with a
``budget`` parameter is a batch strategy: it returns the positions to label, best first. Any other returns
one score per candidate, higher = label first. ``weighted`` combines several functions and metrics by rank.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from runner import contracts
from runner.errors import ConfigError, PluginError
from runner.plugins import instantiate_node

INPUTS = {
    "probs": "class probabilities of the candidates, (n, C)",
    "samples": "MC-dropout samples, (T, n, C)",
    "embeddings": "embeddings of the candidates, (n, d)",
    "labeled_embeddings": "embeddings of the labelled items, (m, d)",
    "n_classes": "number of classes",
    "n_items": "number of candidates",
    "rng": "the stage's seeded numpy Generator",
    "budget": "items to select (makes the function a batch strategy)",
}
MODEL_INPUTS = frozenset({"probs", "samples"})
# Functions needing only these see one chunk of the pool at a time, so memory stays bounded on large pools.
CHUNKABLE = frozenset({"probs", "samples", "n_items", "rng"})


@dataclass
class ScoreFunction:
    """One acquisition function, its inputs read from its signature."""

    label: str
    function: Callable[..., np.ndarray]
    inputs: tuple[str, ...]

    @classmethod
    def from_node(cls, node: dict, label: str, extra: tuple[str, ...] = ()) -> ScoreFunction:
        """``extra`` names further inputs this use allows (``columns``/``weights`` for a weighted combiner)."""
        function = instantiate_node(node, label, _partial_=True)
        try:
            params = inspect.signature(function).parameters
        except ValueError as exc:  # a partial with arguments the function does not take
            raise ConfigError(f"{label}: {exc}") from None
        known = (*INPUTS, *extra)
        required = [n for n, p in params.items() if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
        unknown = [n for n in required if n not in known]
        if unknown:
            raise ConfigError(
                f"{label}: '{node['_target_']}' needs '{unknown[0]}', which the runner cannot give "
                f"(it gives: {', '.join(known)})"
            )
        return cls(label, function, tuple(n for n in params if n in known))

    @property
    def is_batch(self) -> bool:
        return "budget" in self.inputs

    @property
    def chunkable(self) -> bool:
        return set(self.inputs) <= CHUNKABLE


@dataclass
class Component:
    """A term of a weighted acquisition: a score function or a stored metric, with its weight."""

    name: str
    weight: float
    score: ScoreFunction | None = None
    metric: str | None = None


@dataclass
class Acquisition:
    name: str
    main: ScoreFunction
    mc_samples: int | None = None
    components: list[Component] = field(default_factory=list)

    @classmethod
    def from_config(cls, section: dict) -> Acquisition:
        name = section["name"]
        combines = ("columns", "weights") if section.get("components") else ()
        main = ScoreFunction.from_node(section["function"], f"acquisition '{name}'", extra=combines)
        components = []
        for key, spec in (section.get("components") or {}).items():
            if "function" in spec:
                score = ScoreFunction.from_node(spec["function"], f"acquisition.components.{key}")
                if score.is_batch:
                    raise ConfigError(f"acquisition.components.{key}: a batch strategy cannot be weighted")
                components.append(Component(key, float(spec["weight"]), score=score))
            else:
                components.append(Component(key, float(spec["weight"]), metric=spec["metric"]))
        if components and main.is_batch:
            raise ConfigError(f"acquisition '{name}': components need a combining function without 'budget'")
        needs_samples = "samples" in main.inputs or any(c.score and "samples" in c.score.inputs for c in components)
        if needs_samples and not section.get("mc_samples"):
            raise ConfigError(f"acquisition '{name}' scores MC samples; set acquisition.mc_samples")
        return cls(name, main, section.get("mc_samples"), components)

    def functions(self) -> list[ScoreFunction]:
        return [self.main, *(c.score for c in self.components if c.score is not None)]

    @property
    def needs_model(self) -> bool:
        return any(MODEL_INPUTS & set(f.inputs) for f in self.functions())

    @property
    def is_batch(self) -> bool:
        return self.main.is_batch

    def metric_names(self) -> list[str]:
        return [c.metric for c in self.components if c.metric is not None]


class InputProvider:
    """Computes each input at most once per score stage, for the whole candidate set or one chunk."""

    def __init__(self, candidates: np.ndarray, getters: dict[str, Callable[[np.ndarray], Any]],
                 constants: dict[str, Any]) -> None:
        self.candidates = candidates
        self.getters = getters
        self.constants = constants
        self.cache: dict[str, Any] = {}

    def get(self, name: str, part: slice | None = None) -> Any:
        if name in self.constants:
            return self.constants[name]
        if name == "n_items":
            return len(self.candidates) if part is None else len(self.candidates[part])
        if part is not None and name not in self.cache:
            return self.getters[name](self.candidates[part])
        if name not in self.cache:
            self.cache[name] = self.getters[name](self.candidates)
        value = self.cache[name]
        if part is None:
            return value
        return value[:, part] if name == "samples" else value[part]  # samples are (T, n, C)


def score_candidates(function: ScoreFunction, provider: InputProvider, chunk_size: int) -> np.ndarray:
    """One score per candidate, computed chunk by chunk when the function allows it."""
    n = len(provider.candidates)
    if not function.chunkable or n <= chunk_size:
        kwargs = {name: provider.get(name) for name in function.inputs}
        return contracts.check_scores(function.function(**kwargs), n, function.label)
    scores = np.empty(n, dtype=np.float64)
    for start in tqdm(range(0, n, chunk_size), desc="score", unit="chunk", leave=False, disable=None):
        part = slice(start, min(start + chunk_size, n))
        kwargs = {name: provider.get(name, part) for name in function.inputs}
        scores[part] = contracts.check_scores(function.function(**kwargs), part.stop - part.start, function.label)
    return scores


def select_batch(function: ScoreFunction, provider: InputProvider, budget: int) -> np.ndarray:
    """Positions a batch strategy chose, checked: distinct, in range, at most ``budget``."""
    n = len(provider.candidates)
    kwargs = {name: provider.get(name) for name in function.inputs if name != "budget"}
    kwargs["budget"] = budget
    try:
        positions = np.asarray(function.function(**kwargs))
    except (ValueError, TypeError) as exc:
        raise PluginError(f"{function.label}: {exc}") from None
    if positions.ndim != 1 or not np.issubdtype(positions.dtype, np.integer):
        raise PluginError(f"{function.label}: must return a 1-d array of integer positions, got {positions.dtype}")
    if len(positions) > min(budget, n) or len(np.unique(positions)) != len(positions):
        raise PluginError(f"{function.label}: returned {len(positions)} positions, not {min(budget, n)} distinct ones")
    if len(positions) and (positions.min() < 0 or positions.max() >= n):
        raise PluginError(f"{function.label}: returned positions outside 0..{n - 1}")
    return positions.astype(np.int64)


def batch_scores(positions: np.ndarray, n: int) -> np.ndarray:
    """Scores that encode a batch strategy's order (first = 1.0, then decreasing; unchosen = 0)."""
    scores = np.zeros(n, dtype=np.float64)
    k = len(positions)
    scores[positions] = (k - np.arange(k)) / max(k, 1)
    return scores
