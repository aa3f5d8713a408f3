"""The one stop policy of the round driver: why the rounds end after a round has been evaluated.

In this order: the test accuracy reached ``loop.target_accuracy``; successive models agree on the stop set
(stabilizing predictions, Bloodgood and Vijay-Shanker 2009); the configured rounds are done; no unlabelled
candidate passes the filters, so nothing could be selected. The same in every mode: a round whose selection is
already recorded is not asked again, so a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

TARGET_ACCURACY = "target_accuracy"
STABLE_PREDICTIONS = "stable_predictions"
ROUNDS = "rounds"
POOL_EXHAUSTED = "pool_exhausted"
# What the console says when the rounds end for each reason.
SAID = {
    TARGET_ACCURACY: "the test accuracy reached loop.target_accuracy",
    STABLE_PREDICTIONS: "successive models agree on the stop set (loop.stop_agreement over loop.stop_window rounds)",
    ROUNDS: "every round of loop.rounds is done (raise loop.rounds to go on)",
    POOL_EXHAUSTED: "no unlabelled candidate is left (after filters); nothing to select",
}


class StopRule(Protocol):
    """The loop settings the stop policy reads."""

    @property
    def rounds(self) -> int: ...
    @property
    def target_accuracy(self) -> float | None: ...
    @property
    def stop_set(self) -> int: ...
    @property
    def stop_agreement(self) -> float: ...
    @property
    def stop_window(self) -> int: ...
    @property
    def stop_when_stable(self) -> bool: ...


def stop_reason(rule: StopRule, rows: Sequence[dict[str, Any]], round_: int,
                candidates_left: Callable[[], int]) -> str | None:
    """Why the rounds end after evaluating ``round_`` (``rows``: the evaluated rounds so far), or None.
    ``candidates_left`` counts the candidates that pass the filters: asked last, since filtering costs a pass
    over the pool."""
    accuracy = next(r["test_accuracy"] for r in rows if r["round"] == round_)
    if rule.target_accuracy is not None and accuracy is not None and accuracy >= rule.target_accuracy:
        return TARGET_ACCURACY
    if rule.stop_when_stable and round_ in stable_rounds(rows, rule):
        return STABLE_PREDICTIONS
    if round_ >= rule.rounds:
        return ROUNDS
    if candidates_left() == 0:
        return POOL_EXHAUSTED
    return None


def stable_rounds(rows: Sequence[dict[str, Any]], rule: StopRule) -> list[int]:
    """The rounds at which the stabilizing-predictions rule holds: the mean kappa of the last ``stop_window``
    rounds (each against the round before it) is at least ``stop_agreement``."""
    if not rule.stop_set:
        return []
    kappa = {r["round"]: r.get("stop_kappa") for r in rows}
    found = []
    for round_ in kappa:
        window = [kappa.get(r) for r in range(round_ - rule.stop_window + 1, round_ + 1)]
        values = [float(k) for k in window if k is not None]
        if len(values) == len(window) and float(np.mean(values)) >= rule.stop_agreement:
            found.append(round_)
    return found
