"""Label errors: out-of-fold probabilities, the cleanlab audit, annotators who err, relabels taking part of the
budget, and the files a run writes about them (rebuilt from the store, so a killed run resumes to the same)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from plugins.actions.oracle import noisy, reveal
from plugins.audit.cleanlab_issues import FindIssues
from plugins.errors import InputError
from plugins.models.sklearn_model import SklearnClassifier
from runner import stages
from runner.assemble import assemble
from runner.audit import out_of_fold_probs
from runner.errors import ConfigError
from runner.store import Store
from tests.conftest import compose_config, run_cli, run_in_process
from tests.test_cli import KILLER

NOISY = ("+experiment=digits", "act=noisy_oracle", "audit=cleanlab", "loop.rounds=3", "selection.budget=10",
         "loop.initial_labels=40")


def digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.images[:n].astype(np.float32) / 16.0, bunch.target[:n].astype(np.int64)


def logreg(seed: int = 0) -> SklearnClassifier:
    return SklearnClassifier(LogisticRegression(max_iter=300), n_classes=10, random_state=seed)


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- the audit's parts -----------------------------------------------------------------------------------
def test_out_of_fold_probabilities_match_a_loop_over_the_same_folds():
    X, y = digits(120)
    found = out_of_fold_probs(logreg, X, y, folds=4, seed=7)
    expected = np.zeros((120, 10))
    for train, test in StratifiedKFold(4, shuffle=True, random_state=7).split(X, y):
        expected[test] = logreg().fit(X[train], y[train]).predict_proba(X[test])
    np.testing.assert_allclose(found, expected, atol=1e-12)


def test_the_audit_finds_flipped_labels_and_scores_by_the_held_out_probability():
    X, y = digits(300)
    given = y.copy()
    flipped = np.arange(0, 300, 30)  # ten labels moved to the next digit
    given[flipped] = (given[flipped] + 1) % 10
    probs = out_of_fold_probs(logreg, X, given, folds=5, seed=0)
    flagged, scores = FindIssues()(labels=given, pred_probs=probs)
    np.testing.assert_allclose(scores, 1.0 - probs[np.arange(300), given], atol=1e-12)  # self-confidence
    found = set(np.flatnonzero(flagged).tolist())
    recall = len(found & set(flipped.tolist())) / len(flipped)
    precision = len(found & set(flipped.tolist())) / len(found)
    assert recall >= 0.8 and precision >= 0.5, (recall, precision)


class Recorder:
    """Stands in for the store transaction the audit stage writes to."""

    def __init__(self) -> None:
        self.rows: tuple = ()

    def record_label_issues(self, round_, indices, given, suggested, scores) -> None:
        self.rows = (round_, indices.tolist(), given.tolist(), suggested.tolist(), scores.tolist())


def everything(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An audit that flags every label, scored by the given label's held-out probability (lower = first)."""
    return np.ones(len(labels), bool), 1.0 - pred_probs[np.arange(len(labels)), labels]


def test_audit_stage_records_the_flagged_labels_most_suspect_first_with_the_held_out_suggestion():
    X, y = digits(60)
    images = np.concatenate([np.zeros((100, 8, 8), np.float32), X])  # the items sit at 100..159
    recorder = Recorder()
    stages.audit(2, images, np.arange(100, 160), y, logreg, 3, 0, everything, "audit", min_labels=20)(recorder)
    round_, idx, given, suggested, scores = recorder.rows
    probs = out_of_fold_probs(logreg, X, y, folds=3, seed=0)  # all ten classes present: columns = classes
    order = np.lexsort((np.arange(60), probs[np.arange(60), y]))
    assert round_ == 2 and idx == (order + 100).tolist()
    assert given == y[order].tolist() and suggested == probs.argmax(axis=1)[order].tolist()
    np.testing.assert_allclose(scores, 1.0 - probs[order, y[order]], atol=1e-12)


def test_audit_stage_leaves_out_a_class_seen_once_and_small_label_sets():
    X, y = digits(60)
    lonely = y.copy()
    lonely[lonely == 9] = 8
    lonely[7] = 9  # the only 9: a model that never saw it cannot judge it
    recorder = Recorder()
    stages.audit(0, X, np.arange(60), lonely, logreg, 3, 0, everything, "audit", min_labels=20)(recorder)
    assert 7 not in recorder.rows[1] and sorted(recorder.rows[1]) == [i for i in range(60) if i != 7]
    stages.audit(1, X, np.arange(19), y[:19], logreg, 3, 0, everything, "audit", min_labels=20)(recorder)
    assert recorder.rows[1] == []


def test_the_audit_refuses_unknown_settings_in_one_line():
    with pytest.raises(InputError, match=r"^audit.function.filter_by='nope' is not one of prune_by_noise_rate"):
        FindIssues(filter_by="nope")


# --- annotators ------------------------------------------------------------------------------------------
def test_the_noisy_oracle_flips_the_stated_share_to_the_other_classes_evenly():
    truth = np.arange(40000) % 10
    labels = noisy(truth, np.random.default_rng(0), 10, flip_rate=0.1)
    wrong = labels != truth
    assert abs(wrong.mean() - 0.1) < 0.005  # 4,000 expected; sd of the share 0.0015
    offsets = (labels[wrong] - truth[wrong]) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] / wrong.sum() - 1 / 9) < 0.02)
    again = noisy(truth, np.random.default_rng(0), 10, flip_rate=0.1)
    assert np.array_equal(labels, again)
    assert np.array_equal(noisy(truth, np.random.default_rng(0), 10, flip_rate=0.0), reveal(truth))


# --- a simulated run -------------------------------------------------------------------------------------
def test_relabels_take_their_share_and_reveal_the_truth_and_the_files_say_so(tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, *NOISY, "selection.relabel_share=0.3")
    store = Store(run_dir / "state.sqlite")
    try:
        issues = rows(run_dir / "label_issues.csv")
        assert list(issues[0]) == ["item_id", "given_label", "suggested_label", "score", "round"]
        ids = store.item_ids()
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        before: set[str] = set()
        for round_ in range(3):
            picked = store.relabel_indices(round_)
            assert len(picked) <= 3 and len(store.selected_indices(round_)) == 10 - len(picked)
            # The picks are the top suspects of the round's audit, in order, leaving out labels an annotator
            # already looked at again.
            flagged = [r["item_id"] for r in issues if int(r["round"]) == round_ and r["item_id"] not in before]
            assert [ids[i] for i in picked] == flagged[: len(picked)]
            before |= {ids[i] for i in picked}
            listed = rows(run_dir / "relabel" / f"round_{round_:03d}.csv")
            assert [r["item_id"] for r in listed] == [ids[i] for i in picked]
        labelled, labels = store.labeled()
        truth = store.truths(labelled)
        relabelled = np.concatenate([store.relabel_indices(r) for r in range(3)])
        assert np.array_equal(labels[np.isin(labelled, relabelled)], truth[np.isin(labelled, relabelled)])
        # Precision and recall recomputed from the files and the truths.
        for row in metrics:
            flagged = {r["item_id"] for r in issues if int(r["round"]) == row["round"]}
            assert row["label_issues"] == len(flagged)
            if flagged and row["wrong_labels"]:
                assert row["issue_precision"] is not None and 0.0 <= row["issue_precision"] <= 1.0
        assert metrics[-1]["n_relabeled"] == sum(len(store.relabel_indices(r)) for r in range(3))
    finally:
        store.close()


def test_precision_and_recall_match_the_truth(tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, *NOISY)
    store = Store(run_dir / "state.sqlite")
    try:
        ids = store.item_ids()
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        given_at: dict[int, dict[str, str]] = {}
        labelled, labels = store.labeled()
        rounds = {i: r for i, r in store._conn.execute("SELECT idx, round FROM labels")}
        truth = dict(zip(labelled.tolist(), store.truths(labelled).tolist(), strict=True))
        names = [str(d) for d in range(10)]
        for row in metrics:
            # Labels known at round r: acquired before it (no relabels here, so they never change).
            known = {i: y for i, y in zip(labelled.tolist(), labels.tolist(), strict=True) if rounds[i] < row["round"]}
            wrong = {ids[i] for i, y in known.items() if y != truth[i]}
            flagged = {r["item_id"] for r in rows(run_dir / "label_issues.csv") if int(r["round"]) == row["round"]}
            assert row["wrong_labels"] == len(wrong)
            if flagged:
                assert row["issue_precision"] == pytest.approx(len(flagged & wrong) / len(flagged), abs=1e-12)
            if wrong:
                assert row["issue_recall"] == pytest.approx(len(flagged & wrong) / len(wrong), abs=1e-12)
            given_at[row["round"]] = {ids[i]: names[y] for i, y in known.items()}
        for issue in rows(run_dir / "label_issues.csv"):
            assert given_at[int(issue["round"])][issue["item_id"]] == issue["given_label"]
            assert issue["suggested_label"] != issue["given_label"] or float(issue["score"]) > 0
    finally:
        store.close()


@pytest.mark.parametrize(("overrides", "message"), [
    (("selection.relabel_share=0.2",), "selection.relabel_share=0.2 sends label suspects back, and audit=none"),
    (("audit=cleanlab", "selection.relabel_share=0.05"), "is less than one item; raise one of them"),
    (("audit=cleanlab", "selection.relabel_share=0.2", "metrics=quality", "selection.cost=area", "acquisition=margin"),
     "selection.relabel_share counts items"),
    (("audit=cleanlab", "audit.function.filter_by=nope"), "audit.function.filter_by='nope' is not one of"),
    (("audit=cleanlab", "selection.relabel_share=1.0"), "config key 'selection.relabel_share' must be < 1"),
    (("act=noisy_oracle", "act.function.flip_rate=2"), "flip_rate=2 must lie in [0, 1]"),
])
def test_label_error_settings_that_cannot_work_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as caught:
        assemble(compose_config("+experiment=digits", "selection.budget=10", *overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("target", [pytest.param("audit:1", marks=pytest.mark.slow),
                                    pytest.param("select:1", marks=pytest.mark.slow)])
def test_a_run_killed_inside_a_round_with_relabels_resumes_to_the_same_files(tmp_path, target):
    overrides = (*NOISY, "selection.relabel_share=0.3", "loop.stop_set=100", "loop.stop_when_stable=false")
    reference = tmp_path / "reference"
    run_in_process(reference, *overrides)
    run_dir = tmp_path / "killed"
    killed = run_cli("inside", target, *overrides, f"hydra.run.dir={run_dir}", python_args=("-c", KILLER))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_cli(*overrides, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ["label_issues.csv", "metrics.jsonl", *(f"relabel/round_{r:03d}.csv" for r in range(3)),
                 *(f"selected/round_{r:03d}.csv" for r in range(3))]:
        if name == "metrics.jsonl":
            strip = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                     for line in (run_dir / name).read_text().splitlines()]
            assert strip == [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                             for line in (reference / name).read_text().splitlines()]
        else:
            assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.slow
def test_through_the_cli_a_relabel_share_without_an_audit_is_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("+experiment=digits", "selection.relabel_share=0.2", f"hydra.run.dir={run_dir}")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "error: selection.relabel_share=0.2 sends label suspects back, and audit=none finds none; set audit=cleanlab"
    ]
    assert not (run_dir / "state.sqlite").exists()
