"""Schedules, the portfolio bandit, the machinery every combination shares, and diverse margin: hand-computed
values and the runner's round history."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from plugins.acquisition.combine import Component, metric_names, union_inputs
from plugins.acquisition.diverse_margin import diverse_margin
from plugins.acquisition.portfolio import Portfolio, round_reward
from plugins.acquisition.protocol import Decision, PastRound, declared_inputs, inputs_at
from plugins.acquisition.schedule import Schedule
from plugins.acquisition.uncertainty import margin
from plugins.acquisition.weighted import WeightedRankSum
from tests.conftest import run_cli, run_in_process
from tests.test_cli import KILLER


def first_two(n_items: int) -> np.ndarray:
    """Scores that put positions 0 and 1 first."""
    return -np.arange(n_items, dtype=np.float64)


def batch_of_last(embeddings: np.ndarray, budget: int) -> np.ndarray:
    return np.arange(len(embeddings))[::-1][:budget]


def two_phases(**limit: int) -> Schedule:
    return Schedule({"start": {"function": batch_of_last, **limit}, "then": {"function": margin}})


# --- schedules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("round_", "n_labeled", "phase"), [(0, 0, "start"), (3, 59, "start"), (0, 60, "then")])
def test_schedule_hands_over_at_the_labelled_count(round_, n_labeled, phase):
    schedule = two_phases(until_labels=60)
    assert schedule.phase(round_, n_labeled).name == phase


@pytest.mark.parametrize(("round_", "phase"), [(0, "start"), (1, "start"), (2, "then"), (7, "then")])
def test_schedule_hands_over_at_the_round(round_, phase):
    assert two_phases(until_round=2).phase(round_, 1000).name == phase


def test_schedule_asks_only_for_what_the_phase_needs():
    schedule = two_phases(until_labels=60)
    assert set(schedule.inputs) == {"probs", "embeddings", "round", "n_labeled", "budget"}
    start = inputs_at(schedule, declared_inputs(schedule), 0, 20)
    then = inputs_at(schedule, declared_inputs(schedule), 5, 120)
    assert set(start) == {"embeddings", "budget", "round", "n_labeled"}  # a batch strategy this round
    assert set(then) == {"probs", "round", "n_labeled"}  # scores: no model-free input, no budget


def test_schedule_answers_with_the_phase_and_records_its_name():
    schedule = two_phases(until_labels=60)
    early = schedule(round=0, n_labeled=20, embeddings=np.zeros((5, 2)), budget=2)
    late = schedule(round=3, n_labeled=80, probs=np.array([[0.9, 0.1], [0.5, 0.5]]))
    assert isinstance(early, Decision) and early.answer.tolist() == [4, 3] and early.record == {"phase": "start"}
    np.testing.assert_allclose(late.answer, [-0.8, 0.0])
    assert late.record == {"phase": "then"}


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ({}, "at least one phase"),
        ({"a": {"function": margin, "until_labels": 5}}, "last phase runs to the end"),
        ({"a": {"function": margin}, "b": {"function": margin}}, "exactly one of until_labels or until_round"),
        ({"a": {"function": margin, "until_labels": 5, "until_round": 1}, "b": {"function": margin}}, "exactly one"),
        ({"a": {"function": margin, "until_label": 5}, "b": {"function": margin}}, "until_label is not a phase key"),
        ({"a": {"until_labels": 5}, "b": {"function": margin}}, "phases.a needs a function"),
    ],
)
def test_schedule_refuses_malformed_phases(phases, message):
    with pytest.raises(ValueError, match=message):
        Schedule(phases)


# --- the portfolio --------------------------------------------------------------------------------


def past(round_: int, arm: str, before: float, after: float | None) -> PastRound:
    return PastRound(round_, 20 + 10 * round_, before, after, np.zeros(0, np.int64), {"arm": arm})


def test_round_reward_is_the_share_of_errors_removed():
    assert round_reward(past(0, "a", 0.6, 0.7)) == pytest.approx(0.25)  # 0.1 of the 0.4 errors left
    assert round_reward(past(0, "a", 0.8, 0.75)) == pytest.approx(-0.25)
    assert round_reward(past(0, "a", 0.8, None)) is None


def test_portfolio_probabilities_replay_exp3_by_hand():
    portfolio = Portfolio({"a": first_two, "b": first_two}, exploration=0.2, learning_rate=2.0)
    # Round 0 (a): reward 0.25, no earlier rewards, so no credit. Round 1 (b): reward 0.5, advantage
    # 0.5 - 0.25 = 0.25, drawn with probability 0.5: G(b) = 0.5. Round 2 (a): reward 0.0, advantage
    # 0.0 - 0.375 = -0.375, drawn with the probability a had after round 1.
    history = [past(0, "a", 0.6, 0.7), past(1, "b", 0.7, 0.85), past(2, "a", 0.85, 0.85)]

    def mix(g_a: float, g_b: float) -> float:
        e_a, e_b = math.exp(2.0 * g_a), math.exp(2.0 * g_b)
        return 0.8 * e_a / (e_a + e_b) + 0.1

    p_a_after_1 = mix(0.0, 0.5)
    expected_a = mix(-0.375 / p_a_after_1, 0.5)
    found = portfolio.probabilities(history)
    assert found["a"] == pytest.approx(expected_a, rel=1e-12)
    assert found["a"] + found["b"] == pytest.approx(1.0)
    assert portfolio.probabilities([]) == {"a": 0.5, "b": 0.5}


def test_portfolio_ignores_rounds_without_held_out_accuracy():
    portfolio = Portfolio({"a": first_two, "b": first_two})
    history = [past(0, "a", None, None), past(1, "b", 0.5, None)]  # type: ignore[arg-type]
    assert portfolio.probabilities(history) == {"a": 0.5, "b": 0.5}


def test_portfolio_draw_comes_from_the_rng_and_is_recorded():
    portfolio = Portfolio({"scores": first_two, "batch": batch_of_last}, exploration=1.0)
    inputs = {"n_items": 6, "embeddings": np.zeros((6, 2)), "budget": 2, "history": ()}
    draws = [portfolio(rng=np.random.default_rng(seed), **inputs) for seed in range(40)]
    again = [portfolio(rng=np.random.default_rng(seed), **inputs) for seed in range(40)]
    assert [d.record for d in draws] == [d.record for d in again]
    arms = {d.record["arm"] for d in draws}
    assert arms == {"scores", "batch"}
    for decision in draws:
        # a score arm's answer becomes its top-k; a batch arm's positions are kept
        expected = [0, 1] if decision.record["arm"] == "scores" else [5, 4]
        assert decision.answer.tolist() == expected
        assert decision.record["probabilities"] == {"scores": 0.5, "batch": 0.5}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"arms": {"a": margin}}, "at least two"),
        ({"arms": {"a": margin, "b": margin}, "exploration": 0.0}, "exploration must be in"),
        ({"arms": {"a": margin, "b": margin}, "learning_rate": -1.0}, "learning_rate must be positive"),
    ],
)
def test_portfolio_refuses_bad_settings(arguments, message):
    with pytest.raises(ValueError, match=message):
        Portfolio(**arguments)


# --- diverse margin -------------------------------------------------------------------------------


def test_diverse_margin_takes_one_uncertain_item_per_region():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.repeat(centres, 25, axis=0) + 0.1 * rng.standard_normal((100, 2))
    region = np.repeat(np.arange(4), 25)
    # Regions 0 and 1 are confident (margin 0.8); 2 and 3 are confused (margin 0.0 to 0.2).
    gap = np.where(region < 2, 0.8, rng.uniform(0.0, 0.2, 100))
    probs = np.stack([(1 + gap) / 2, (1 - gap) / 2], axis=1)
    chosen = diverse_margin(probs, x, budget=2, rng=np.random.default_rng(1), prefilter=10)
    assert sorted(region[chosen]) == [2, 3]
    # best first: the picks come in order of informativeness 1 - gap
    assert gap[chosen[0]] <= gap[chosen[1]]


def test_diverse_margin_is_top_k_margin_when_the_prefilter_is_one():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), size=50)
    chosen = diverse_margin(probs, rng.standard_normal((50, 4)), budget=5, rng=rng, prefilter=1)
    assert sorted(chosen.tolist()) == sorted(np.argsort(-margin(probs), kind="stable")[:5].tolist())


# --- through the runner ---------------------------------------------------------------------------

DIGITS = ("+experiment=digits", "loop.rounds=4", "selection.budget=10")
SCHEDULE = (
    "acquisition=schedule", "acquisition.function.phases.typiclust.until_labels=40",
)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_schedule_runs_its_phases_and_records_them(tmp_path):
    run_in_process(tmp_path, *DIGITS, *SCHEDULE, "loop.initial_labels=0")
    phases = [(r["n_labeled"], r.get("acquisition", {}).get("phase")) for r in rows(tmp_path)]
    assert phases == [(0, "typiclust"), (10, "typiclust"), (20, "typiclust"), (30, "typiclust"),
                      (40, None)]  # the last round is evaluated, not scored
    run_in_process(tmp_path / "late", *DIGITS, *SCHEDULE, "acquisition.function.phases.typiclust.until_labels=30")
    phases = [r.get("acquisition", {}).get("phase") for r in rows(tmp_path / "late")]
    assert phases == ["typiclust", "diverse_margin", "diverse_margin", "diverse_margin", None]


def test_a_schedule_that_needs_a_model_at_round_zero_is_refused_on_a_cold_start(tmp_path):
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a trained model"):
        run_in_process(tmp_path, *DIGITS, *SCHEDULE, "acquisition.function.phases.typiclust.until_labels=0",
                       "loop.initial_labels=0")


@pytest.mark.slow
def test_killed_portfolio_run_resumes_to_the_same_draws(tmp_path):
    overrides = (*DIGITS, "acquisition=portfolio", "loop.rounds=3")
    reference = tmp_path / "reference"
    run_in_process(reference, *overrides)
    killed_dir = tmp_path / "killed"
    killed = run_cli("inside", "act:1", *overrides, f"hydra.run.dir={killed_dir}", python_args=("-c", KILLER))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_cli(*overrides, f"hydra.run.dir={killed_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert rows(killed_dir) == [
        {**r, "seconds": rows(killed_dir)[i]["seconds"]} for i, r in enumerate(rows(reference))
    ]
    arms = [r["acquisition"]["arm"] for r in rows(reference)[:-1]]
    assert len(arms) == 3 and set(arms) <= {"diverse_margin", "badge", "typiclust"}
    for name in ("round_000.csv", "round_001.csv", "round_002.csv"):
        assert (killed_dir / "selected" / name).read_bytes() == (reference / "selected" / name).read_bytes()


# --- strategies in prediction space -------------------------------------------------------------------------


def test_in_prediction_space_hands_probabilities_for_embeddings():
    from plugins.acquisition.coreset import k_center_greedy
    from plugins.acquisition.spaces import InPredictionSpace

    rng = np.random.default_rng(4)
    probs, labeled_probs = rng.dirichlet(np.ones(4), size=40), rng.dirichlet(np.ones(4), size=6)
    wrapped = InPredictionSpace(k_center_greedy)
    assert wrapped.inputs == ("probs", "labeled_probs", "budget")
    chosen = wrapped(probs=probs, labeled_probs=labeled_probs, budget=5)
    assert chosen.tolist() == k_center_greedy(probs, labeled_probs, 5).tolist()
    with pytest.raises(ValueError, match="takes no embeddings"):
        InPredictionSpace(margin)


# --- what every combination shares (plugins.acquisition.combine) ----------------------------------------------


def labelled_mean_gap(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Declares ``labels`` before ``probs``; ``threshold`` is configuration, never an input."""
    return probs[:, 0] - float(np.mean(labels)) - threshold


class ReadsColumns:
    """A combination stand-in: lists its inputs and the metric columns it reads."""

    inputs = ("metrics", "n_items")
    metric_names = ("brightness", "area")

    def __call__(self, **inputs: object) -> Decision:
        return Decision(np.zeros(int(inputs["n_items"])), {"seen": sorted(inputs)})


def test_a_component_is_called_with_only_the_inputs_it_declared():
    component = Component.of("gap", labelled_mean_gap)
    assert component.needs == ("labels", "probs") and not component.is_batch
    given = {"probs": np.array([[0.9, 0.1], [0.2, 0.8]]), "labels": np.array([0, 1]), "rng": None, "budget": 1}
    # A plain function takes no **kwargs, so any input beyond labels and probs would raise TypeError here.
    np.testing.assert_allclose(component(given), [0.9 - 0.5 - 0.5, 0.2 - 0.5 - 0.5])


def test_a_component_reads_an_input_under_another_name_when_told():
    component = Component.of("gap", labelled_mean_gap)
    given = {"labeled_probs": np.array([[0.75, 0.25]]), "labels": np.array([1, 1])}
    np.testing.assert_allclose(component(given, read_from={"probs": "labeled_probs"}), [0.75 - 1.0 - 0.5])


def test_a_component_unpacks_a_decision_and_a_bare_answer():
    answer, record = Component.of("columns", ReadsColumns()).decide({"metrics": {}, "n_items": 3})
    assert answer.tolist() == [0.0, 0.0, 0.0] and record == {"seen": ["metrics", "n_items"]}
    answer, record = Component.of("first", first_two).decide({"n_items": 2})
    assert answer.tolist() == [0.0, -1.0] and record == {}


def test_a_component_asking_for_an_unknown_input_is_refused_with_its_config_key():
    def wants_weather(probs: np.ndarray, weather: str) -> np.ndarray:
        return probs[:, 0]

    with pytest.raises(ValueError, match=r"^arms\.sunny: needs 'weather', which the runner cannot give"):
        Component.of("sunny", wants_weather, "arms")
    with pytest.raises(ValueError, match=r"^sunny: needs 'weather'"):
        Component.of("sunny", wants_weather)


def test_union_inputs_follow_the_protocol_order_whatever_the_components_order():
    gap, batch = Component.of("gap", labelled_mean_gap), Component.of("batch", batch_of_last)
    # INPUTS lists probs, embeddings, ..., labels, ..., budget: the order of the protocol, each name once.
    assert union_inputs([gap, batch]) == ("probs", "embeddings", "labels", "budget")
    assert union_inputs([batch, gap], extra=("history", "probs")) == ("probs", "embeddings", "labels", "history",
                                                                       "budget")
    assert union_inputs([]) == ()


def test_metric_names_are_gathered_component_by_component():
    components = [Component.of("plain", first_two), Component.of("columns", ReadsColumns()),
                  Component.of("again", ReadsColumns())]
    assert components[0].metric_names == []
    assert metric_names(components) == ["brightness", "area", "brightness", "area"]


def test_combinations_answer_for_their_components_as_before():
    schedule = Schedule({"cold": {"function": ReadsColumns(), "until_round": 1}, "then": {"function": first_two}})
    assert schedule.inputs == ("metrics", "n_items", "round", "n_labeled")
    assert schedule.metric_names == ["brightness", "area"]
    portfolio = Portfolio({"columns": ReadsColumns(), "batch": batch_of_last})
    assert portfolio.inputs == ("embeddings", "metrics", "n_items", "rng", "history", "budget")
    assert portfolio.metric_names == ["brightness", "area"]
    weighted = WeightedRankSum({"gap": {"weight": 1.0, "function": labelled_mean_gap},
                                "dark": {"weight": -1.0, "metric": "brightness"}})
    assert weighted.inputs == ("probs", "labels", "metrics")
    assert weighted.metric_names == ["brightness"]
    with pytest.raises(ValueError, match=r"^components\.batch: a batch strategy cannot be weighted"):
        WeightedRankSum({"batch": {"weight": 1.0, "function": batch_of_last}})
    with pytest.raises(ValueError, match=r"^phases\.cold: needs 'weather'"):
        Schedule({"cold": {"function": lambda weather: weather}})


def test_a_weighted_sum_names_the_metric_columns_a_nested_combination_reads():
    inner = WeightedRankSum({"bright": {"weight": 1.0, "metric": "brightness"}})
    outer = WeightedRankSum({"inner": {"weight": 2.0, "function": inner}, "big": {"weight": 1.0, "metric": "area"}})
    assert outer.inputs == ("metrics",)
    assert outer.metric_names == ["area", "brightness"]  # its own column first, then the nested one's
    metrics = {"brightness": np.array([0.1, 0.9, 0.5]), "area": np.array([3.0, 1.0, 2.0])}
    # inner: ranks of brightness (0, 1, 0.5); outer: 2 * ranks of those (0, 1, 0.5) + ranks of area (1, 0, 0.5)
    np.testing.assert_allclose(outer(metrics=metrics), [1.0, 2.0, 1.5])
