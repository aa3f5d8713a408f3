"""A portfolio that learns which strategy to use: a bandit over strategies, after Active Learning by Learning
(Hsu & Lin 2015), for batches.

Each round one arm (a configured acquisition function) picks the whole batch. The arm is drawn from EXP3
probabilities

    pi(a) = (1 - exploration) * softmax(learning_rate * G)(a) + exploration / K,

where G(a) sums, over the rounds a was drawn, its advantage divided by the probability it had of being drawn
(the importance weighting that keeps the estimate unbiased for arms drawn rarely). The reward of a round is the
measured effect of its labels: the relative drop in held-out error from the model that chose the batch to the
model trained once the batch was labelled,

    reward = (accuracy_after - accuracy_before) / (1 - accuracy_before), clipped to [-1, 1],

and its advantage is the reward minus the mean reward of the measured rounds before it. Gains shrink as any
run goes on, whichever arm is drawn; without the baseline the arm drawn first would collect the early windfall.

Why held-out accuracy and not ALBL's importance-weighted accuracy on the queried items: ALBL queries one item
at a time and mixes every strategy's choice with uniform sampling item by item. With batches chosen whole by
one deterministic strategy, an item's chance of being queried is either about pi(arm) or about
pi(random) * budget / pool, so the importance weights swing by three orders of magnitude and the estimate is
noise; and an accuracy on items the model was trained on says nothing about a 784-feature model. The held-out
items are the run's test split in simulation and the held-out items of a platform project; rounds without
held-out accuracy (``project.source.test_fraction: 0``) teach the bandit nothing, and it keeps drawing from
its current probabilities. The bandit sees those items only through one number per round, choosing among K
arms, so it cannot fit them; still, report accuracy on items it never saw where that matters.

Everything the bandit knows comes from ``history`` (the arm each round drew is in its record, the accuracies
in the round rows) and its draw from the round's seeded ``rng``: a resumed run draws the same arms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from plugins.acquisition.combine import Component, metric_names, union_inputs
from plugins.acquisition.protocol import Decision, PastRound
from plugins.selection.policies import topk

# What the portfolio reads itself: the draw, and the rounds that set the arms' probabilities.
OWN_INPUTS = ("budget", "rng", "history")


class Portfolio:
    """``arms``: name -> acquisition function (scores or a batch strategy); ``exploration`` in (0, 1];
    ``learning_rate`` > 0 scales the summed rewards inside the softmax."""

    def __init__(self, arms: Mapping[str, Callable[..., Any]], exploration: float = 0.2,
                 learning_rate: float = 2.0) -> None:
        if len(arms) < 2:
            raise ValueError("arms: name at least two acquisition functions to choose between")
        if not 0.0 < float(exploration) <= 1.0:
            raise ValueError(f"exploration must be in (0, 1], got {exploration}")
        if float(learning_rate) <= 0.0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.exploration = float(exploration)
        self.learning_rate = float(learning_rate)
        self.arms = {str(name): Component.of(str(name), function, "arms") for name, function in arms.items()}

    @property
    def inputs(self) -> tuple[str, ...]:
        return union_inputs(self.arms.values(), OWN_INPUTS)

    @property
    def metric_names(self) -> list[str]:
        return metric_names(self.arms.values())

    def probabilities(self, history: Sequence[PastRound]) -> dict[str, float]:
        """The arms' probabilities of being drawn after ``history``, replayed round by round."""
        names = list(self.arms)
        gains = dict.fromkeys(names, 0.0)
        current = self._mix(gains)
        earlier: list[float] = []
        for past in history:
            arm = past.record.get("arm")
            reward = round_reward(past)
            if arm not in gains or reward is None:
                continue
            if earlier:
                # Credit relative to the rounds before, not the absolute gain, which shrinks as any run goes on.
                gains[arm] += (reward - float(np.mean(earlier))) / current[arm]
                current = self._mix(gains)
            earlier.append(reward)
        return current

    def _mix(self, gains: dict[str, float]) -> dict[str, float]:
        values = self.learning_rate * np.array(list(gains.values()))
        weights = np.exp(values - values.max())
        mixed = (1.0 - self.exploration) * weights / weights.sum() + self.exploration / len(gains)
        return {name: float(p) for name, p in zip(gains, mixed, strict=True)}

    def __call__(self, **inputs: Any) -> Decision:
        pi = self.probabilities(inputs["history"])
        names = list(pi)
        rng: np.random.Generator = inputs["rng"]
        arm = names[int(rng.choice(len(names), p=np.array([pi[n] for n in names])))]
        component = self.arms[arm]
        answer = np.asarray(component.decide(inputs)[0])
        positions = answer if component.is_batch else topk(answer, int(inputs["budget"]))
        return Decision(positions.astype(np.int64), {"arm": arm, "probabilities": pi})


def round_reward(past: PastRound) -> float | None:
    """The relative drop in held-out error that round's labels brought; None when it was not measured."""
    before, after = past.test_accuracy, past.accuracy_after
    if before is None or after is None:
        return None
    if before >= 1.0:
        return 0.0
    return float(np.clip((after - before) / (1.0 - before), -1.0, 1.0))
