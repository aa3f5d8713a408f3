"""Any classifier, honestly: accuracy from the estimator's own predict, classes numbered without gaps for the
estimator, one model file per estimator kind (swapping needs no argument removal), packages outside scikit-learn
once allowed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from plugins.models.sklearn_model import SklearnClassifier
from runner.errors import ConfigError
from runner.validation import validate
from tests.conftest import compose_config, run_in_process


def digits(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.images[:n].astype(np.float32) / 16.0, bunch.target[:n].astype(np.int64)


class RefusesGaps:
    """An estimator that, like xgboost, wants the classes numbered 0..k-1."""

    def __init__(self) -> None:
        self.seen: np.ndarray | None = None

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params: object) -> RefusesGaps:
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> RefusesGaps:
        if not np.array_equal(np.unique(y), np.arange(len(np.unique(y)))):
            raise ValueError(f"Invalid classes inferred from unique values of `y`: {np.unique(y)}")
        self.classes_ = np.unique(y)
        self.seen = y
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), len(self.classes_)))
        out[:, -1] = 1.0
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X), dtype=np.int64)


def test_classes_with_gaps_reach_the_estimator_as_0_to_k_and_come_back_as_the_run_classes(monkeypatch):
    monkeypatch.setattr("plugins.models.sklearn_model.clone", lambda estimator: estimator)
    X, _ = digits(6)
    y = np.array([2, 5, 9, 2, 5, 9])
    model = SklearnClassifier(RefusesGaps(), n_classes=10).fit(X, y)
    assert model.estimator.seen.tolist() == [0, 1, 2, 0, 1, 2]
    probs = model.predict_proba(X)
    assert probs.shape == (6, 10) and (probs[:, 9] == 1.0).all()  # the estimator's last class is class 9
    assert model.predict(X).tolist() == [2] * 6  # its class 0 is class 2


@pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning")
def test_accuracy_is_the_estimators_own_predict_not_the_argmax_of_its_probabilities():
    X, y = digits(300)
    train, test = np.arange(20), np.arange(100, 300)
    model = SklearnClassifier(SVC(probability=True, random_state=0), n_classes=10, random_state=0)
    model.fit(X[train], y[train])
    direct = SVC(probability=True, random_state=0).fit(X[train].reshape(20, -1), y[train])
    # An independent route: the SVC fitted by hand on the same rows (all ten classes present, so no renumbering).
    assert model.predict(X[test]).tolist() == direct.predict(X[test].reshape(200, -1)).tolist()
    by_predict = float((model.predict(X[test]) == y[test]).mean())
    by_argmax = float((model.predict_proba(X[test]).argmax(axis=1) == y[test]).mean())
    # Platt scaling fitted on two examples per class is far off; the decision function is not.
    assert by_predict > by_argmax + 0.2


def test_a_single_class_predicts_that_class():
    X, _ = digits(4)
    model = SklearnClassifier(LogisticRegression(), n_classes=10).fit(X, np.array([7, 7, 7, 7]))
    assert model.predict(X).tolist() == [7] * 4 and model.predict_proba(X)[:, 7].tolist() == [1.0] * 4


@pytest.mark.parametrize("name, estimator", [
    ("logreg", "sklearn.linear_model.LogisticRegression"),
    ("svc", "sklearn.svm.SVC"),
    ("random_forest", "sklearn.ensemble.RandomForestClassifier"),
    ("xgboost", "xgboost.XGBClassifier"),
    ("lightgbm", "lightgbm.LGBMClassifier"),
])
def test_each_estimator_has_its_own_model_file_and_swaps_without_removing_arguments(name, estimator):
    if name in ("xgboost", "lightgbm"):
        pytest.importorskip(name)
    config = compose_config("+experiment=digits", f"model={name}")
    assert config["model"]["estimator"]["_target_"] == estimator
    validate(config)  # no argument of another estimator is left behind


def test_a_package_outside_scikit_learn_runs_only_once_listed():
    pytest.importorskip("xgboost")
    config = compose_config("+experiment=digits", "model=xgboost", "allowed_packages=[]")
    with pytest.raises(ConfigError, match="model.estimator._target_' names 'xgboost.XGBClassifier', outside"):
        validate(config)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_boosted_trees_run_a_whole_simulation(tmp_path, name):
    pytest.importorskip(name)
    summary = run_in_process(tmp_path / name, "+experiment=digits", f"model={name}", "loop.rounds=1",
                             "selection.budget=10", "model.estimator.n_estimators=10")
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert summary["final_test_accuracy"] == rows[-1]["test_accuracy"] and 0.3 < rows[-1]["test_accuracy"] <= 1.0
