"""Stopping without a test set: stabilizing predictions (Bloodgood and Vijay-Shanker 2009) on a fixed unlabelled
stop set, in simulation; human mode is covered in tests/test_encord_loop.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.settings import LoopSettings
from runner.stages import agreement
from runner.stopping import stable_rounds
from runner.store import Store
from tests.conftest import run_in_process

DIGITS = ("+experiment=digits", "selection.budget=10", "loop.rounds=6")


def test_agreement_is_cohens_kappa_and_one_for_identical_predictions():
    # Hand computation: observed 3/4; chance (2/4 * 1/4) + (2/4 * 3/4) = 1/2; kappa (3/4 - 1/2) / (1 - 1/2).
    assert agreement(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx(0.5, abs=1e-12)
    # Both models predicting one class throughout: kappa is 0/0, and the models agree completely.
    assert agreement(np.array([2, 2, 2]), np.array([2, 2, 2]), 3) == 1.0
    assert agreement(np.array([0, 1, 2]), np.array([1, 2, 0]), 3) < 0


def rows(kappas: list[float | None]) -> list[dict]:
    return [{"round": r, "stop_kappa": k} if k is not None else {"round": r} for r, k in enumerate(kappas)]


def loop(agreement_: float = 0.99, window: int = 3, stop_set: int = 100) -> LoopSettings:
    return LoopSettings(rounds=10, stop_set=stop_set, stop_agreement=agreement_, stop_window=window)


def test_the_rule_holds_once_the_mean_kappa_of_the_window_reaches_the_threshold():
    kappas = [None, 0.90, 0.995, 0.995, 0.99, 0.96, 1.0, 1.0, 1.0]
    # Round 3: mean(0.90, 0.995, 0.995) = 0.9633; round 4: mean(0.995, 0.995, 0.99) = 0.9933; rounds 5, 6, 7
    # hold 0.96 in their window: 0.9817, 0.9833, 0.9867; round 8: 1.0.
    assert stable_rounds(rows(kappas), loop()) == [4, 8]
    assert stable_rounds(rows(kappas), loop(window=1)) == [2, 3, 4, 6, 7, 8]
    assert stable_rounds(rows(kappas), loop(stop_set=0)) == []  # the rule is off


def test_a_simulation_stops_where_successive_models_agree_and_reports_it(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_in_process(run_dir, *DIGITS, "loop.stop_set=300", "loop.stop_window=2",
                             "loop.stop_agreement=0.8")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kappas = [m.get("stop_kappa") for m in metrics]
    assert kappas[0] is None and all(k is not None for k in kappas[1:])
    expected = next(r for r in range(2, len(kappas)) if (kappas[r - 1] + kappas[r]) / 2 >= 0.8)
    assert summary["stopped"] == "stable_predictions" and len(metrics) == expected + 1
    assert summary["stable_at_labels"] == metrics[expected]["n_labeled"]
    store = Store(run_dir / "state.sqlite")
    try:
        stop_set = store.array("stop_set/indices")
        assert len(stop_set) == 300 and len(np.unique(stop_set)) == 300
        # Drawn from the unlabelled pool at the start: never a test item, never an initial label.
        initial = {row[0] for row in store._conn.execute("SELECT idx FROM labels WHERE round = -1")}
        assert set(stop_set.tolist()) <= set(store.split_indices("pool").tolist())
        assert len(initial) == 20 and not set(stop_set.tolist()) & initial
        # The kappas are those of the stored predictions on the stop set.
        for round_ in range(1, expected + 1):
            before, after = store.array(f"stop/{round_ - 1:03d}"), store.array(f"stop/{round_:03d}")
            assert kappas[round_] == pytest.approx(agreement(before, after, 10), abs=1e-12)
    finally:
        store.close()


def test_the_rule_can_only_report_and_the_run_goes_on(tmp_path):
    summary = run_in_process(tmp_path / "run", *DIGITS, "loop.stop_set=300", "loop.stop_window=1",
                             "loop.stop_agreement=0.01", "loop.stop_when_stable=false")
    assert summary["stopped"] == "rounds" and summary["rounds_evaluated"] == 7
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["stable_at_labels"] == metrics[1]["n_labeled"]
