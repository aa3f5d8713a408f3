"""What every combination of acquisition functions (a schedule, a portfolio, a weighted sum, a change of space)
does with the functions it wraps: read what each declares it needs, ask the runner for the union of those
inputs, gather the metric columns they read, and call each with only the inputs it declared.

A combination is itself an acquisition function that lists its needs in ``inputs`` (see
``plugins.acquisition.protocol``), so combinations nest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from plugins.acquisition.protocol import INPUTS, declared_inputs, unpack
from plugins.protocols import ReadsMetrics

# No input renamed: each is read under its own name.
SAME_NAMES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Component:
    """One wrapped acquisition function: its name in the combination's config, and the inputs it declared, in
    the order it declared them."""

    name: str
    function: Callable[..., Any]
    needs: tuple[str, ...]

    @classmethod
    def of(cls, name: str, function: Callable[..., Any], group: str | None = None) -> Component:
        """``function`` with its declared inputs; ValueError naming it (``group.name``, the config key) when it
        asks for an input the runner cannot give."""
        try:
            needs = declared_inputs(function)
        except ValueError as exc:
            raise ValueError(f"{group}.{name}: {exc}" if group else f"{name}: {exc}") from None
        return cls(name, function, needs)

    @property
    def is_batch(self) -> bool:
        """Whether the function is a batch strategy (it takes the budget and answers with positions)."""
        return "budget" in self.needs

    @property
    def metric_names(self) -> list[str]:
        """The metric columns the function reads (a nested combination may read some)."""
        return list(self.function.metric_names) if isinstance(self.function, ReadsMetrics) else []

    def __call__(self, inputs: Mapping[str, Any], read_from: Mapping[str, str] = SAME_NAMES) -> Any:
        """The function called with only the inputs it declared, taken from ``inputs``; ``read_from`` maps an
        input it declared to the name it is read under instead (``embeddings`` from ``probs``)."""
        return self.function(**{n: inputs[read_from.get(n, n)] for n in self.needs})

    def decide(self, inputs: Mapping[str, Any]) -> tuple[Any, Mapping[str, Any]]:
        """``(answer, record)`` of a call: the record the function kept for the round, empty if it kept none."""
        return unpack(self(inputs))


def in_protocol_order(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` once each, in the order ``plugins.acquisition.protocol.INPUTS`` lists them."""
    wanted = set(names)
    return tuple(n for n in INPUTS if n in wanted)


def union_inputs(components: Iterable[Component], extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every input some component needs, plus ``extra`` (what the combination reads itself), in protocol order."""
    return in_protocol_order([*extra, *(n for component in components for n in component.needs)])


def metric_names(components: Iterable[Component]) -> list[str]:
    """The metric columns the components read, component by component."""
    return [m for component in components for m in component.metric_names]
