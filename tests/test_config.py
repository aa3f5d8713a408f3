"""Config validation: every bad input is one line naming the key, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.errors import ConfigError
from runner.rundir import differing_keys
from runner.validation import validate
from tests.conftest import REPO, run_in_process


def composed(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=digits", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def test_default_configs_are_valid():
    validate(composed())
    validate(composed("project=mnist"))
    validate(composed("model=cnn", "acquisition=bald"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+selection.budjet=5"], "unknown config key 'selection.budjet'; allowed keys here: budget, chunk_size"),
        (["selection.budget=-5"], "config key 'selection.budget' must be > 0 (got -5)"),
        (["loop.rounds=0"], "config key 'loop.rounds' must be >= 1 (got 0)"),
        (["loop.rounds=two"], "config key 'loop.rounds' must be of type integer (got 'two')"),
        (["loop.target_accuracy=1.5"], "config key 'loop.target_accuracy' must be <= 1 (got 1.5)"),
        (["+surprise=1"], "unknown config key 'surprise'"),
        (["model._target_=os.system"], "config key 'model._target_' names 'os.system', outside the allowed"),
        (["model.estimator._target_=os.system"], "config key 'model.estimator._target_' names 'os.system', outside"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(composed(*overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_differing_keys_lists_dotted_paths():
    old = {"a": 1, "b": {"c": 2, "d": 3}}
    new = {"a": 1, "b": {"c": 5}, "e": 0}
    assert differing_keys(old, new) == ["b.c", "b.d", "e"]


def test_describe_is_used_for_missing_keys():
    config = composed()
    del config["loop"]["rounds"]
    with pytest.raises(ConfigError, match=r"config key 'loop.rounds' is missing"):
        validate(config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+selection.budjet=5"], "unknown config key 'selection.budjet'"),
        (["selection.budget=-5"], "config key 'selection.budget' must be > 0"),
        (["loop.rounds=0"], "config key 'loop.rounds' must be >= 1"),
        (["selection.budget=1600"], "selection.budget=1600 is larger than the pool (1500 items)"),
        (["model=cnn", "acquisition=bald", "acquisition.mc_samples=1"], "acquisition.mc_samples' must be >= 2"),
        (["acquisition=bald"], "needs MC samples but model 'plugins.models.sklearn_model.SklearnClassifier'"),
        (["loop.initial_labels=0"], "acquisition 'diverse_margin' needs a trained model"),
        (["+model.estimator.bogus=1"], "config key 'model.estimator.bogus' is not an argument of sklearn.linear_model"),
        (["model.estimator._target_=sklearn.svm.SVC"], "model.estimator: SVC has no predict_proba"),
    ],
)
def test_a_run_refuses_bad_config_with_one_line_and_exit_2(tmp_path, overrides, message):
    # In this process: tests/test_cli_errors.py shows the same refusals through the command line.
    with pytest.raises(ConfigError) as err:
        run_in_process(tmp_path / "run", "+experiment=digits", *overrides)
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2
    assert list((tmp_path / "run").iterdir()) == []  # refused before anything was written


@pytest.mark.slow
def test_a_config_is_validated_once_per_process(tmp_path, monkeypatch):
    """The command line's pre-check and the run's assembly check the same config: the second asks the first."""
    from runner import validation
    from runner.composition import parse_command
    from runner.precheck import check_command

    calls = []
    original = validation.check_keys
    monkeypatch.setattr(validation, "check_keys", lambda config: calls.append(1) or original(config))
    monkeypatch.setattr(validation, "_validated", set())
    run_dir = tmp_path / "run"
    check_command(parse_command(["+experiment=digits", "loop.rounds=1", f"hydra.run.dir={run_dir}"]))
    run_in_process(run_dir, "+experiment=digits", "loop.rounds=1")
    assert len(calls) == 1
    run_in_process(tmp_path / "other", "+experiment=digits", "loop.rounds=1", "seed=3")  # another config: checked
    assert len(calls) == 2


class OwnFilter:
    """A candidate filter of a user's own, with arguments the shipped one does not take."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold


def test_a_filter_of_ones_own_takes_its_own_arguments_and_the_shipped_ones_stay_typed():
    config = composed("allowed_packages=[tests]")
    config["filters"] = {"_target_": "tests.test_config.OwnFilter", "threshold": 0.5}
    validate(config)
    with pytest.raises(ConfigError, match="config key 'filters.near_duplicate_threshold' must be >= 0"):
        validate(composed("filters.near_duplicate_threshold=-1"))
    with pytest.raises(ConfigError, match="'filters.exclude_near_duplicates' must be of type boolean"):
        validate(composed("filters.exclude_near_duplicates=maybe"))
