"""From the ``acquisition`` config to scores or a batch: which inputs a function needs, and computing them once.

What an acquisition function may ask for, and how it asks, is written down in ``plugins.acquisition.protocol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from plugins.acquisition.protocol import (
    CHUNKABLE,
    EMBEDDING_INPUTS,
    MODEL_INPUTS,
    SHARDABLE,
    declared_inputs,
    inputs_at,
    unpack,
)
from plugins.protocols import ReadsMetrics
from runner import contracts
from runner.compute import Compute, shards
from runner.errors import ConfigError, PluginError
from runner.instantiate import instantiate_callable


@dataclass(frozen=True)
class Acquisition:
    """One configured acquisition function and the inputs it asks for."""

    name: str
    function: Callable[..., np.ndarray]
    inputs: tuple[str, ...]
    mc_samples: int | None
    metric_names: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Acquisition:
        label = f"acquisition '{section['name']}'"
        function = instantiate_callable(section["function"], label)
        try:
            inputs = declared_inputs(function)
        except ValueError as exc:
            raise ConfigError(f"{label}: '{section['function']['_target_']}' {exc}") from None
        mc_samples = section.get("mc_samples")
        if "samples" in inputs and not mc_samples:
            raise ConfigError(f"{label} scores MC samples; set acquisition.mc_samples")
        metric_names = tuple(function.metric_names) if isinstance(function, ReadsMetrics) else ()
        return cls(section["name"], function, inputs, mc_samples, metric_names)

    def at(self, round_: int, n_labeled: int) -> Acquisition:
        """This acquisition with only the inputs it needs in round ``round_`` (see ``inputs_for`` in the protocol)."""
        try:
            needed = inputs_at(self.function, self.inputs, round_, n_labeled)
        except ValueError as exc:
            raise PluginError(f"{self.label}: {exc}") from None
        return self if needed == self.inputs else replace(self, inputs=needed)

    @property
    def label(self) -> str:
        return f"acquisition '{self.name}'"

    @property
    def is_batch(self) -> bool:
        return "budget" in self.inputs

    @property
    def chunkable(self) -> bool:
        return set(self.inputs) <= CHUNKABLE

    @property
    def shardable(self) -> bool:
        return set(self.inputs) <= SHARDABLE

    @property
    def needs_model(self) -> bool:
        return bool(MODEL_INPUTS & set(self.inputs))

    @property
    def needs_embeddings(self) -> bool:
        return bool(EMBEDDING_INPUTS & set(self.inputs))


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


def score_candidates(acquisition: Acquisition, provider: InputProvider,
                     chunk_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One score per candidate, computed chunk by chunk when the function allows it, and the round's record."""
    n = len(provider.candidates)
    if not acquisition.chunkable or n <= chunk_size:
        return _scores(acquisition, {name: provider.get(name) for name in acquisition.inputs}, n)
    scores = np.empty(n, dtype=np.float64)
    records = []
    for start in tqdm(range(0, n, chunk_size), desc="score", unit="chunk", leave=False, disable=None):
        part = slice(start, min(start + chunk_size, n))
        kwargs = {name: provider.get(name, part) for name in acquisition.inputs}
        scores[part], record = _scores(acquisition, kwargs, part.stop - part.start)
        records.append(record)
    if any(r != records[0] for r in records):
        raise PluginError(f"{acquisition.label} recorded different things for different chunks of the pool")
    return scores, records[0]


def score_shards(acquisition: Acquisition, candidates: np.ndarray, getters: dict[str, Callable[[np.ndarray], Any]],
                 constants: dict[str, Any], chunk_size: int, shard_items: int,
                 compute: Compute) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`score_candidates` over shards of whole chunks, each shard one call of ``compute.map``.

    A shard holds a whole number of chunks, so every chunk is the chunk a single pass makes and the scores
    are the same bits wherever the shards ran.
    """
    size = max(1, -(-shard_items // chunk_size)) * chunk_size

    def score_shard(part: slice) -> tuple[np.ndarray, dict[str, Any]]:
        provider = InputProvider(candidates[part], getters, constants)
        return score_candidates(acquisition, provider, chunk_size)

    parts = compute.map(score_shard, shards(len(candidates), size))
    if not parts:
        return np.zeros(0), {}
    records = [record for _, record in parts]
    if any(r != records[0] for r in records):
        raise PluginError(f"{acquisition.label} recorded different things for different shards of the pool")
    return np.concatenate([scores for scores, _ in parts]), records[0]


def _scores(acquisition: Acquisition, kwargs: dict[str, Any], n: int) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        values, record = unpack(acquisition.function(**kwargs))
    except ValueError as exc:
        raise PluginError(f"{acquisition.label}: {exc}") from None
    return contracts.check_scores(values, n, acquisition.label), contracts.check_record(record, acquisition.label)


def select_batch(acquisition: Acquisition, provider: InputProvider, budget: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Positions a batch strategy chose, best first, checked: distinct, in range, at most ``budget``; and the
    round's record."""
    n = len(provider.candidates)
    kwargs = {name: provider.get(name) for name in acquisition.inputs if name != "budget"}
    kwargs["budget"] = budget
    try:
        value, record = unpack(acquisition.function(**kwargs))
        positions = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise PluginError(f"{acquisition.label}: {exc}") from None
    return (contracts.check_positions(positions, budget, n, acquisition.label),
            contracts.check_record(record, acquisition.label))
