"""Which targets may run: every ``_target_`` (Hydra's own sections included) is resolved to an object without
calling it, and refused in one line naming the key and the target unless an allowed package defines it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from runner.composition import parse_command
from runner.errors import ConfigError
from runner.precheck import check_command
from runner.targets import (
    HYDRA_ALLOWED,
    HYDRA_RULES,
    TASK_ALLOWED,
    TASK_RULES,
    check_targets,
    hydra_defaults,
    resolve_target,
    user_packages,
)
from tests.conftest import REPO


def check(*argv: str) -> None:
    """The checks ``python -m runner ARGV`` makes before Hydra runs anything, in this process."""
    check_command(parse_command(argv))


def refusal(*argv: str) -> str:
    with pytest.raises(ConfigError) as err:
        check(*argv)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A path that any of the refused targets below would create if it ran."""
    return tmp_path / "created"


def nothing_created(sentinel: Path) -> bool:
    return not any(sentinel.parent.glob(sentinel.name + "*"))


# (overrides with SENTINEL for the path a target would create, the key named, the target named)
BYPASSES = [
    # module attributes reached through a plugin or scikit-learn module
    (["model.estimator._target_=plugins.sources.offline.np.save", "+model.estimator._args_=['SENTINEL',[1]]"],
     "model.estimator._target_", "plugins.sources.offline.np.save"),
    (["model.estimator._target_=plugins.encord.images.os.makedirs", "+model.estimator._args_=['SENTINEL']"],
     "model.estimator._target_", "plugins.encord.images.os.makedirs"),
    (["model.estimator._target_=sklearn.datasets._base.os.makedirs", "+model.estimator._args_=['SENTINEL']"],
     "model.estimator._target_", "sklearn.datasets._base.os.makedirs"),
    (["model.estimator._target_=plugins.sources.offline.np"], "model.estimator._target_", "plugins.sources.offline.np"),
    # outside every allowed package
    (["model.estimator._target_=os.makedirs", "+model.estimator.name='SENTINEL'"],
     "model.estimator._target_", "os.makedirs"),
    (["model.estimator._target_=builtins.exec", "+model.estimator._args_=['open(\"SENTINEL\",\"w\")']"],
     "model.estimator._target_", "builtins.exec"),
    (["model.estimator._target_=builtins.getattr"], "model.estimator._target_", "builtins.getattr"),
    (["model.estimator._target_=functools.partial"], "model.estimator._target_", "functools.partial"),
    (["model.estimator._target_=hydra.utils.call"], "model.estimator._target_", "hydra.utils.call"),
    (["model.estimator._target_=hydra.utils.get_method"], "model.estimator._target_", "hydra.utils.get_method"),
    # inside an allowed package, but not an allowed kind of object
    (["model.estimator._target_=plugins.sources.offline"], "model.estimator._target_", "plugins.sources.offline"),
    (["model.estimator._target_=plugins.models.sklearn_model.clone"],
     "model.estimator._target_", "plugins.models.sklearn_model.clone"),
    (["model.estimator._target_=sklearn.datasets.dump_svmlight_file"],
     "model.estimator._target_", "sklearn.datasets.dump_svmlight_file"),
    (["model.estimator._target_=sklearn.utils.Bunch"], "model.estimator._target_", "sklearn.utils.Bunch"),
    (["model.estimator._target_=plugins.files.atomic_write_text", "+model.estimator._args_=['SENTINEL','x']"],
     "model.estimator._target_", "plugins.files.atomic_write_text"),
    # helpers of a plugin module that lists its plugins in __all__ (an export's command line writes files)
    (["project.source._target_=plugins.encord.export.make_example", "+project.source.out='SENTINEL'"],
     "project.source._target_", "plugins.encord.export.make_example"),
    (["model.estimator._target_=plugins.encord.export.copy_whole", "+model.estimator._args_=['.','SENTINEL']"],
     "model.estimator._target_", "plugins.encord.export.copy_whole"),
    (["model.estimator._target_=plugins.encord.images.fetch_url", "+model.estimator._args_=['file:///etc/hosts']"],
     "model.estimator._target_", "plugins.encord.images.fetch_url"),
    # nested in arguments and in _args_
    (["model.estimator.C={_target_:os.makedirs,name:'SENTINEL'}"], "model.estimator.C._target_", "os.makedirs"),
    (["+model.estimator._args_=[{_target_:os.makedirs,name:'SENTINEL'}]"],
     "model.estimator._args_[0]._target_", "os.makedirs"),
    (["+project.source.extra={_target_:subprocess.run,args:[touch,'SENTINEL']}"],
     "project.source.extra._target_", "subprocess.run"),
    # what Hydra creates itself, before the job: callbacks, launcher, sweeper, logging
    (["+hydra.callbacks.evil._target_=os.makedirs", "+hydra.callbacks.evil.name='SENTINEL'"],
     "hydra.callbacks.evil._target_", "os.makedirs"),
    (["+hydra.callbacks.evil._target_=plugins.sources.encord_export.make_example",
      "+hydra.callbacks.evil.out='SENTINEL'"],
     "hydra.callbacks.evil._target_", "plugins.sources.encord_export.make_example"),
    (["hydra.launcher._target_=plugins.files.atomic_write_text"],
     "hydra.launcher._target_", "plugins.files.atomic_write_text"),
    (["hydra.sweeper._target_=hydra.utils.instantiate"], "hydra.sweeper._target_", "hydra.utils.instantiate"),
    (["hydra.job_logging.handlers.console.class=subprocess.Popen"],
     "hydra.job_logging.handlers.console.class", "subprocess.Popen"),
    (["hydra.job_logging.handlers.console.stream=ext://antigravity.fly"],
     "hydra.job_logging.handlers.console.stream", "ext://antigravity.fly"),
    (["hydra.hydra_logging.handlers.console.class=plugins.sources.offline.np.save"],
     "hydra.hydra_logging.handlers.console.class", "plugins.sources.offline.np.save"),
]


@pytest.mark.parametrize(("overrides", "key", "target"), BYPASSES, ids=[f"{b[1]}={b[2]}" for b in BYPASSES])
def test_bypass_by_override_is_refused_before_anything_runs(tmp_path, sentinel, overrides, key, target):
    run_dir = tmp_path / "run"
    argv = [o.replace("SENTINEL", str(sentinel)) for o in overrides]
    message = refusal("+experiment=digits", f"hydra.run.dir={run_dir}", *argv)
    assert f"config key '{key}'" in message and target in message
    assert nothing_created(sentinel) and not run_dir.exists()


@pytest.fixture
def evil_configs(tmp_path: Path, sentinel: Path) -> Path:
    """A config directory for hydra.searchpath with a group file and experiments that try to run code."""
    root = tmp_path / "evil"
    (root / "acquisition").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "experiment").mkdir()
    # the acquisition schema only asks for a name under plugins.acquisition; the object check does the rest
    (root / "acquisition" / "evil.yaml").write_text(
        "name: evil\nfunction:\n  _target_: plugins.acquisition.uncertainty.np.save\n"
        f"  _args_: ['{sentinel}', [1]]\n"
    )
    (root / "model" / "evil.yaml").write_text(
        "_target_: plugins.models.sklearn_model.SklearnClassifier\n"
        f"estimator:\n  _target_: sklearn.datasets._base.os.makedirs\n  _args_: ['{sentinel}']\n"
    )
    (root / "experiment" / "evil_callback.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /project: digits\n"
        f"hydra:\n  callbacks:\n    evil:\n      _target_: os.makedirs\n      name: '{sentinel}'\n"
    )
    (root / "experiment" / "evil_logging.yaml").write_text(
        "# @package _global_\n"
        f"hydra:\n  job_logging:\n    handlers:\n      evil:\n        (): os.makedirs\n        name: '{sentinel}'\n"
    )
    (root / "experiment" / "evil_packages.yaml").write_text(
        "# @package _global_\nallowed_packages: [os]\nmodel:\n  estimator:\n    _target_: os.makedirs\n"
    )
    return root


@pytest.mark.parametrize(
    ("choice", "key", "target"),
    [
        ("acquisition=evil", "acquisition.function._target_", "plugins.acquisition.uncertainty.np.save"),
        ("model=evil", "model.estimator._target_", "sklearn.datasets._base.os.makedirs"),
        ("+experiment=evil_callback", "hydra.callbacks.evil._target_", "os.makedirs"),
        ("+experiment=evil_logging", "hydra.job_logging.handlers.evil.()", "os.makedirs"),
        ("+experiment=evil_packages", "allowed_packages[0]", "'os'"),
    ],
)
def test_bypass_by_group_file_on_the_search_path_is_refused(tmp_path, sentinel, evil_configs, choice, key, target):
    argv = [f"hydra.searchpath=[file://{evil_configs}]", f"hydra.run.dir={tmp_path / 'run'}"]
    if not choice.startswith("+experiment"):
        argv.append("+experiment=digits")
    message = refusal(*argv, choice)
    assert f"config key '{key}'" in message and target in message
    assert nothing_created(sentinel)


def test_bypass_in_one_job_of_a_sweep_refuses_the_sweep(tmp_path, evil_configs):
    sweep_dir = tmp_path / "sweep"
    message = refusal("-m", f"hydra.searchpath=[file://{evil_configs}]", "+experiment=digits",
                      "model=logreg,evil", f"hydra.sweep.dir={sweep_dir}")
    assert "config key 'model.estimator._target_' names 'sklearn.datasets._base.os.makedirs'" in message
    message = refusal("-m", "+experiment=digits", f"hydra.sweep.dir={sweep_dir}",
                      "model.estimator._target_=sklearn.linear_model.LogisticRegression,builtins.eval")
    assert "config key 'model.estimator._target_' names 'builtins.eval'" in message
    message = refusal("hydra.mode=MULTIRUN", "+experiment=digits", f"hydra.sweep.dir={sweep_dir}",
                      "model.estimator._target_=sklearn.linear_model.LogisticRegression,plugins.files.atomic_write")
    assert "config key 'model.estimator._target_' names 'plugins.files.atomic_write'" in message
    assert not sweep_dir.exists()


def test_pkg_config_source_is_refused_before_it_is_imported():
    assert "antigravity" not in sys.modules
    message = refusal("+experiment=digits", "hydra.searchpath=[pkg://antigravity]")
    assert "'pkg://antigravity'" in message and "antigravity" not in sys.modules


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("[os]", "config key 'allowed_packages[0]' cannot list 'os'"),
        ("[numpy,subprocess]", "config key 'allowed_packages[1]' cannot list 'subprocess'"),
        ("[sklearn]", "cannot list 'sklearn'"),
        ("[hydra]", "cannot list 'hydra'"),
        ("['os.path']", "cannot list 'os.path'"),
        ("['no such']", "config key 'allowed_packages[0]' must be a package name"),
    ],
)
def test_allowed_packages_never_opens_the_standard_library_or_the_resolvers(listed, message):
    assert message in refusal("+experiment=digits", f"allowed_packages={listed}")


def test_a_listed_package_allows_its_classes(tmp_path):
    argv = ("+experiment=digits", f"hydra.run.dir={tmp_path / 'run'}",
            "model.estimator._target_=mlxtend.classifier.SoftmaxRegression",
            "~model.estimator.C", "~model.estimator.max_iter", "+model.estimator.epochs=5")
    assert "names 'mlxtend.classifier.SoftmaxRegression', outside the allowed targets" in refusal(*argv)
    check(*argv, "allowed_packages=[mlxtend]")
    check(*argv, "allowed_packages=[mlxtend.classifier]")
    # listing a package is not listing its neighbours
    assert "outside the allowed targets" in refusal(*argv, "allowed_packages=[mlxtend.regressor]")


GROUPS = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name not in ("experiment", "hydra"))


def shipped_choices() -> list:
    """Every experiment (default suite), and every choice of every group and launcher (with -m slow)."""
    choices: list = [(f"+experiment={p.stem}",) for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))]
    more = [("+experiment=digits", f"{group}={p.stem}") for group in GROUPS
            for p in sorted((REPO / "conf" / group).glob("*.yaml"))]
    more += [("+experiment=digits", f"hydra/launcher={name}")
             for name in ("basic", "joblib", "submitit_local", "submitit_slurm")]
    return choices + [pytest.param(*[c], id=" ".join(c), marks=pytest.mark.slow) for c in more]


# the values these configs leave for the user to give (???)
ENCORD = ("project.source.project_hash=abc", "project.source.classification=digit")
MANDATORY = {"+experiment=encord": ENCORD, "project=encord": ENCORD, "embedder=clip": ("embedder.weights_path=e.pt",),
             "project=folder": ("project.source.path=.",), "project=embeddings": ("project.source.path=e.npy",)}


@pytest.mark.parametrize("overrides", shipped_choices(), ids=lambda c: " ".join(c))
def test_every_shipped_config_passes(tmp_path, overrides):
    for package in ("xgboost", "lightgbm"):  # the [boost] extra: checking names their classes, so imports them
        if overrides[-1] == f"model={package}":
            pytest.importorskip(package)
    check(*overrides, *MANDATORY.get(overrides[-1], ()), f"hydra.run.dir={tmp_path / 'run'}")
    assert list(tmp_path.iterdir()) == []  # checked without creating or leaving anything


def test_every_shipped_sweep_launcher_passes(tmp_path):
    for launcher in ("basic", "joblib", "submitit_local"):
        check("-m", "+experiment=digits", f"hydra/launcher={launcher}", "acquisition=entropy,random",
              f"hydra.sweep.dir={tmp_path / launcher}")
    assert list(tmp_path.iterdir()) == []


def defined_in_the_tests() -> None:
    """A function outside every allowed package."""


def test_rules_take_the_object_not_the_name(monkeypatch):
    import plugins.models.cnn as cnn

    # an outside function placed in a plugin module: allowed only where it is defined, which is here (tests)
    monkeypatch.setattr(cnn, "borrowed", defined_in_the_tests, raising=False)
    with pytest.raises(ConfigError, match=r"defined as 'tests\.test_targets\.defined_in_the_tests', outside the"):
        resolve_target("k", "plugins.models.cnn.borrowed", TASK_RULES, TASK_ALLOWED)

    # a function that claims a plugin module but is not found there under its name
    impostor = types.FunctionType(defined_in_the_tests.__code__, {}, "impostor")
    impostor.__module__, impostor.__qualname__ = "plugins.models.cnn", "GalCNN_"
    monkeypatch.setattr(cnn, "impostor", impostor, raising=False)
    with pytest.raises(ConfigError, match="not defined at the top of module 'plugins.models.cnn'"):
        resolve_target("k", "plugins.models.cnn.impostor", TASK_RULES, TASK_ALLOWED)

    assert resolve_target("k", "plugins.models.cnn.GalCNN", TASK_RULES, TASK_ALLOWED) is cnn.GalCNN
    # a plugin re-exported through a package's namespace counts where it is defined
    from plugins.filters.masks import has_tags

    assert resolve_target("k", "plugins.filters.has_tags", TASK_RULES, TASK_ALLOWED) is has_tags


def test_hydra_rules_take_launchers_sweepers_and_callbacks_only():
    from hydra.experimental.callbacks import LogJobReturnCallback
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    found = resolve_target("k", "hydra.experimental.callbacks.LogJobReturnCallback", HYDRA_RULES, "")
    assert found is LogJobReturnCallback
    found = resolve_target("k", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", HYDRA_RULES, "")
    assert found is JoblibLauncher
    for target in ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.log",  # a logger beside the launcher
                   "hydra.experimental.callbacks.Path",
                   "plugins.models.cnn.GalCNN"):
        refused = "outside the allowed targets|through an attribute|not defined|not a class"
        with pytest.raises(ConfigError, match=refused):
            resolve_target("k", target, HYDRA_RULES, HYDRA_ALLOWED)


def test_hydras_own_launcher_and_sweeper_are_allowed_by_the_names_hydras_configs_give_them():
    # Named by Hydra's own default configs, so an upgrade that moves them moves the allowed names with them.
    defaults = hydra_defaults()
    assert len(defaults) == 2 and all(name.rpartition(".")[2] in ("BasicLauncher", "BasicSweeper") for name in defaults)
    for name in defaults:
        check_targets({"hydra": {"launcher": {"_target_": name}}})
    with pytest.raises(ConfigError, match="outside the allowed targets"):
        check_targets({"hydra": {"launcher": {"_target_": "hydra.utils.instantiate"}}})


@pytest.mark.parametrize("target", ["", "os", ".plugins.x", "plugins..x", "plugins.x y", 3, ["plugins.x"], None])
def test_target_must_be_a_dotted_name(target):
    with pytest.raises(ConfigError, match="config key 'k' must be the dotted path of a class or function"):
        resolve_target("k", target, TASK_RULES, TASK_ALLOWED)


def test_nothing_is_imported_outside_the_allowed_packages():
    for name in ("this", "antigravity"):
        assert name not in sys.modules
        with pytest.raises(ConfigError, match="outside the allowed targets"):
            resolve_target("k", f"{name}.x", TASK_RULES, TASK_ALLOWED)
        with pytest.raises(ConfigError, match="outside the allowed targets"):
            resolve_target("k", f"{name}.x", TASK_RULES + user_packages({"allowed_packages": ["xgboost"]}), "")
        assert name not in sys.modules
