"""Mistakes typed on the command line: one line naming what is wrong and what is allowed, exit 2, no traceback.

The messages are checked in-process against the function that formats them; a few cases go through the real
CLI to show the line, the exit code and that Hydra started nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.composition import describe_composition_error
from runner.errors import ConfigError
from runner.preflight import check_output_dir
from runner.validation import validate
from tests.conftest import REPO, run_cli

CONF = REPO / "conf"


def composition_error(*overrides: str) -> str:
    """The one line for what Hydra's composition refuses in ``overrides``."""
    with pytest.raises(Exception) as err, initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        compose(config_name="config", overrides=["+experiment=digits", *overrides])
    message = describe_composition_error(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def keys_of(section: str) -> str:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=digits"], return_hydra_config=True)
    node = cfg if section == "" else OmegaConf.select(cfg, section)
    return ", ".join(sorted(node))


def choices_of(group: str) -> str:
    return ", ".join(sorted(p.stem for p in (CONF / group).glob("*.yaml")))


@pytest.mark.parametrize(
    ("override", "key", "section", "hint"),
    [
        ("selection.budjet=5", "selection.budjet", "selection", "; did you mean 'budget'?"),
        ("loop.roundz=3", "loop.roundz", "loop", "; did you mean 'rounds'?"),
        ("model.estimator.foo=1", "model.estimator.foo", "model.estimator", "; to add it write +model.estimator.foo=1"),
        ("sede=1", "sede", "", "; did you mean 'seed'?"),
    ],
)
def test_unknown_key_lists_the_keys_allowed_there(override, key, section, hint):
    assert composition_error(override) == f"unknown config key '{key}'; allowed keys here: {keys_of(section)}{hint}"


def test_unknown_key_below_a_value():
    assert composition_error("selection.budget.x=1") == (
        "unknown config key 'selection.budget.x'; 'selection.budget' holds no keys"
    )


@pytest.mark.parametrize(
    ("override", "group", "choice", "hint"),
    [
        ("acquisition=entropyy", "acquisition", "entropyy", "; did you mean 'entropy'?"),
        ("model=nope", "model", "nope", ""),
        ("+experiment=mnits", "experiment", "mnits", "; did you mean 'mnist'?"),
        ("project=fashion", "project", "fashion", "; did you mean 'fashion_mnist'?"),
    ],
)
def test_unknown_choice_lists_the_choices_and_the_closest(override, group, choice, hint):
    expected = f"unknown choice '{choice}' for config group '{group}'; available: {choices_of(group)}{hint}"
    if override.startswith("+experiment"):
        with pytest.raises(Exception) as err, initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose(config_name="config", overrides=[override])
        assert describe_composition_error(err.value) == expected
    else:
        assert composition_error(override) == expected


def test_unknown_launcher_lists_the_installed_ones():
    message = composition_error("hydra/launcher=jobib")
    assert message.startswith("unknown choice 'jobib' for config group 'hydra/launcher'; available: basic, joblib")
    assert message.endswith("; did you mean 'joblib'?")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("selection.budget=[1,", "no viable alternative at input '[1,'"),
        ("selection.budget", "missing EQUAL at '<EOF>'"),
        ("selection.budget=5)", "extraneous input ')' expecting <EOF>"),
        ("selection.budget=${oops", "mismatched input '{' expecting <EOF>"),
    ],
)
def test_malformed_override_names_it_and_what_is_wrong(override, reason):
    assert composition_error(override) == f"malformed override '{override}': {reason}"


@pytest.mark.parametrize(
    ("override", "start"),
    [
        ("selection=x,y", "Ambiguous value for argument 'selection=x,y' 1. To use it as a list"),
        ("~selection.nope", "Could not delete from config. 'selection.nope' does not exist."),
        ("++selection=3", "force-add of config groups is not supported: '++selection=3'"),
        ("hydra.job.chdir=maybe", "Error merging override hydra.job.chdir=maybe Value 'maybe' is not a valid bool"),
    ],
)
def test_other_refusals_of_hydra_fit_one_line(override, start):
    assert composition_error(override).startswith(start)


def test_run_dir_that_cannot_be_created(tmp_path: Path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=f"^hydra.run.dir={a_file} is a file, not a directory$"):
        check_output_dir(str(a_file), "hydra.run.dir")
    under = a_file / "run"
    with pytest.raises(ConfigError, match=f"^hydra.run.dir={under} would lie under {a_file}, which is a file"):
        check_output_dir(str(under), "hydra.run.dir")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match=f"^hydra.sweep.dir={link}/s would lie under {link}, which is a broken"):
        check_output_dir(str(link / "s"), "hydra.sweep.dir")
    check_output_dir(str(tmp_path / "new" / "deeper"), "hydra.run.dir")  # creatable: no error
    check_output_dir(str(tmp_path), "hydra.run.dir")


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs Linux /proc")
def test_run_dir_in_a_directory_nobody_may_write():
    # /proc/1 refuses new entries even to root, so this holds whoever runs the tests
    with pytest.raises(ConfigError, match="^hydra.run.dir=/proc/1/run cannot be created: /proc/1 is not writable$"):
        check_output_dir("/proc/1/run", "hydra.run.dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_existing_run_dir_that_is_not_writable(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="is not writable$"):
        check_output_dir(str(locked), "hydra.run.dir")


def digits_config(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=digits", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.estimator._target_=sklearn.linear_model.Nope"],
         "config key 'model.estimator._target_' names 'sklearn.linear_model.Nope', but module 'sklearn.linear_model' "
         "has no 'Nope'; closest: "),
        (["model.estimator._target_=sklearn.linear_model.LogisticRegresion"],
         "has no 'LogisticRegresion'; closest: LogisticRegression, "),
        (["+model.estimator.Cc=1"],
         "config key 'model.estimator.Cc' is not an argument of sklearn.linear_model.LogisticRegression; "
         "its arguments: penalty, C, "),
        (["model.estimator.C=-1"],
         "config key 'model.estimator.C': The 'C' parameter of LogisticRegression must be a float in the range "
         "(0.0, inf]. Got -1 instead."),
        (["model.estimator.max_iter=many"], "config key 'model.estimator.max_iter': The 'max_iter' parameter"),
        (["model.estimator._target_=sklearn.ensemble.RandomForestClassifier", "~model.estimator.C",
          "~model.estimator.max_iter", "+model.estimator.criterion=purity"],
         "config key 'model.estimator.criterion': The 'criterion' parameter of RandomForestClassifier must be a str "
         "among"),
        (["+model.estimator._args_=[l2,1]"],
         "config key 'model.estimator._args_' does not fit sklearn.linear_model.LogisticRegression: too many "
         "positional arguments"),
    ],
)
def test_estimator_mistakes_name_the_key_and_the_bad_name(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(digits_config(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_argument_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'max_iter'\?$"):
        validate(digits_config("+model.estimator.max_iters=5"))


def test_valid_estimator_arguments_pass():
    validate(digits_config("model.estimator.C=0.5", "+model.estimator.class_weight=balanced"))
    validate(digits_config("model.estimator._target_=sklearn.ensemble.RandomForestClassifier", "~model.estimator.C",
                           "~model.estimator.max_iter", "+model.estimator.n_estimators=10"))


# Through the real CLI (a few: each is a Python start-up).
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["selection.budjet=5"], "error: unknown config key 'selection.budjet'; allowed keys here: budget, chunk_size"),
        (["acquisition=entropyy"], "error: unknown choice 'entropyy' for config group 'acquisition'; available: "),
        (["selection.budget=[1,"], "error: malformed override 'selection.budget=[1,': "),
        (["model.estimator.C=-1"], "error: config key 'model.estimator.C': The 'C' parameter of LogisticRegression"),
    ],
)
def test_cli_mistake_is_one_line_and_exit_2(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    result = run_cli("+experiment=digits", f"hydra.run.dir={run_dir}", *overrides)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert not run_dir.exists()  # refused before Hydra made the run directory


def test_cli_run_dir_that_is_a_file(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run_cli("+experiment=digits", f"hydra.run.dir={a_file / 'run'}")
    assert result.returncode == 2
    assert result.stderr == f"error: hydra.run.dir={a_file / 'run'} would lie under {a_file}, which is a file, " \
                            "not a directory\n"


def test_cli_refuses_a_callback_before_hydra_creates_it(tmp_path):
    # Hydra instantiates hydra.callbacks before the job; without the check this creates the directory
    sentinel = tmp_path / "created"
    result = run_cli("+experiment=digits", f"hydra.run.dir={tmp_path / 'run'}",
                     "+hydra.callbacks.evil._target_=os.makedirs", f"+hydra.callbacks.evil.name={sentinel}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: config key 'hydra.callbacks.evil._target_' names 'os.makedirs', outside the allowed targets "
        "(Hydra's basic launcher, sweeper and callbacks, the joblib, submitit and Ray launchers; "
        "allowed_packages: none)"
    ]
    assert not sentinel.exists() and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_refuses_an_experiment_file_that_runs_code(tmp_path):
    configs, sentinel = tmp_path / "configs", tmp_path / "created.npy"
    (configs / "experiment").mkdir(parents=True)
    (configs / "experiment" / "evil.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /project: digits\n"
        f"model:\n  estimator:\n    _target_: plugins.sources.offline.np.save\n    _args_: ['{sentinel}', [1]]\n"
    )
    result = run_cli(f"hydra.searchpath=[file://{configs}]", "+experiment=evil", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr.startswith("error: config key 'model.estimator._target_' names "
                                    "'plugins.sources.offline.np.save', which reaches 'np.save' through an attribute")
    assert len(result.stderr.splitlines()) == 1 and not sentinel.exists()


@pytest.mark.slow
def test_cli_show_config_and_help_still_work():
    shown = run_cli("+experiment=digits", "--cfg", "job")
    assert shown.returncode == 0 and "allowed_packages: []" in shown.stdout
    mistaken = run_cli("+experiment=digits", "selection.budjet=1", "--cfg", "job")
    assert mistaken.returncode == 2 and mistaken.stderr.startswith("error: unknown config key 'selection.budjet'")
