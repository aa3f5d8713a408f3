"""A schedule: one strategy until a number of labels or rounds, then the next (a cold start, then uncertainty).

The TypiClust and ProbCover papers advise exactly this: typical, covering picks while labels are few, an
uncertainty or gradient strategy once the model is worth asking. Phases are tried in the order the config
lists them; a phase with ``until_labels: N`` applies while fewer than N items are labelled, one with
``until_round: R`` while the round is below R, and the last phase (no limit) from then on::

    function:
      _target_: plugins.acquisition.schedule.Schedule
      phases:
        typiclust: {until_labels: 100, function: {_target_: plugins.acquisition.typiclust.typiclust, _partial_: true}}
        margin: {function: {_target_: plugins.acquisition.uncertainty.margin, _partial_: true}}

In each round the schedule asks for what its current phase needs (``inputs_for``), is a batch strategy when that
phase is one, and records the phase's name (``acquisition.phase`` in metrics.jsonl). Which phase runs depends on
the round and the labelled count only, so a resumed run takes the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.acquisition.combine import Component, metric_names, union_inputs
from plugins.acquisition.protocol import Decision

LIMITS = ("until_labels", "until_round")
# What the schedule reads itself, to pick the phase.
OWN_INPUTS = ("round", "n_labeled")


@dataclass(frozen=True)
class Phase:
    """A phase's function, and its limit: it applies while the count ``limit`` names (one of LIMITS) is below
    ``bound``; the last phase has no limit."""

    component: Component
    limit: str | None  # one of LIMITS, None for the last phase
    bound: int

    @property
    def name(self) -> str:
        return self.component.name

    def applies(self, round_: int, n_labeled: int) -> bool:
        if self.limit is None:
            return True
        return (n_labeled if self.limit == "until_labels" else round_) < self.bound


class Schedule:
    """``phases``: name -> ``{function, until_labels | until_round}``, in order; the last one has no limit."""

    def __init__(self, phases: Mapping[str, Mapping[str, Any]]) -> None:
        if not phases:
            raise ValueError("phases: name at least one phase with a function")
        names = list(phases)
        self.phases: list[Phase] = []
        for position, name in enumerate(names):
            spec = phases[name]
            if "function" not in spec:
                raise ValueError(f"phases.{name} needs a function")
            unknown = sorted(set(spec) - {"function", *LIMITS})
            if unknown:
                allowed = ", ".join(("function", *LIMITS))
                raise ValueError(f"phases.{name}.{unknown[0]} is not a phase key (allowed: {allowed})")
            limits = [key for key in LIMITS if spec.get(key) is not None]
            last = position == len(names) - 1
            if last and limits:
                raise ValueError(f"phases.{name}: the last phase runs to the end, so it takes no {limits[0]}")
            if not last and len(limits) != 1:
                raise ValueError(f"phases.{name}: give exactly one of {' or '.join(LIMITS)} (every phase but the last)")
            bound = int(spec[limits[0]]) if limits else 0
            if limits and bound < 0:
                raise ValueError(f"phases.{name}.{limits[0]} must be at least 0, got {bound}")
            component = Component.of(name, spec["function"], "phases")
            self.phases.append(Phase(component, limits[0] if limits else None, bound))

    @property
    def inputs(self) -> tuple[str, ...]:
        return union_inputs((phase.component for phase in self.phases), OWN_INPUTS)

    @property
    def metric_names(self) -> list[str]:
        return metric_names(phase.component for phase in self.phases)

    def phase(self, round_: int, n_labeled: int) -> Phase:
        return next(p for p in self.phases if p.applies(round_, n_labeled))

    def inputs_for(self, round_: int, n_labeled: int) -> tuple[str, ...]:
        return union_inputs([self.phase(round_, n_labeled).component], OWN_INPUTS)

    def __call__(self, **inputs: Any) -> Decision:
        phase = self.phase(int(inputs["round"]), int(inputs["n_labeled"]))
        answer, record = phase.component.decide(inputs)
        return Decision(np.asarray(answer), {"phase": phase.name, **record})
