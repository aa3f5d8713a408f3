"""The pre-check composes the command line through Hydra's public API the way ``@hydra.main`` composes it. Where
that rests on what Hydra does inside (its flags, its basic sweeper's split, its search path), these tests compare
with Hydra's own private code, so a Hydra upgrade that changes it fails here, loudly, and nowhere else."""

from __future__ import annotations

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the comparison is the point
from hydra._internal.utils import get_args_parser  # the comparison is the point
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from runner.composition import Command, compose_run, compose_sweep, parse_command, sweep_jobs
from runner.errors import ConfigError
from tests.conftest import REPO

ARGVS = [
    [],
    ["+experiment=mnist", "seed=1"],
    ["-m", "acquisition=entropy,margin", "seed=0,1"],
    ["--multirun", "+experiment=digits", "hydra/launcher=joblib"],
    ["--cfg", "job", "--resolve", "-p", "loop"],
    ["-c", "hydra", "x=1"],
    ["--help"], ["-h"], ["--hydra-help"], ["--version"], ["--info"], ["-i", "searchpath"],
    ["--config-dir", "/tmp", "--config-name", "config.resolved", "hydra.run.dir=x"],
    ["-cd", "/tmp", "-cn", "c", "-cp", "../conf"],
    ["--shell-completion", "query=a"], ["-sc"],
    ["--experimental-rerun", "x.pickle"],
    ["-r", "seed=2"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) or "none" for a in ARGVS])
def test_the_command_line_is_read_as_hydra_reads_it(argv, capsys):
    ours = parse_command(argv)
    if argv == ["--version"]:  # Hydra's parser prints its version and exits; nothing is composed
        with pytest.raises(SystemExit):
            get_args_parser().parse_args(argv)
        assert ours.shows_help
        return
    theirs = get_args_parser().parse_args(argv)
    assert ours.overrides == tuple(theirs.overrides)
    assert ours.multirun == theirs.multirun and ours.cfg == theirs.cfg
    assert (ours.config_path, ours.config_name, ours.config_dir) == (
        theirs.config_path, theirs.config_name, theirs.config_dir)
    assert ours.shows_help == bool(theirs.help or theirs.hydra_help or theirs.info)
    assert ours.shell_completion == theirs.shell_completion
    assert ours.experimental_rerun == theirs.experimental_rerun


def test_every_flag_hydra_knows_is_known_here():
    from runner.composition import argument_parser

    def flags(parser):
        return {s for action in parser._actions for s in action.option_strings}

    assert flags(get_args_parser()) - {"--help", "-h"} <= flags(argument_parser())


@pytest.mark.parametrize("overrides", [
    ["a=1,2", "b=x,y,z"],
    ["+experiment=digits", "acquisition=entropy,margin,random", "seed=0,1,2"],
    ["seed=range(0,3)", "loop.rounds=2"],
    ["seed=0,1", "seed=2,3"],  # a key named twice: the first place, the last values
])
def test_sweep_jobs_are_split_as_the_basic_sweeper_splits_them(overrides):
    config = OmegaConf.create({"hydra": {"sweeper": {"_target_": "x.BasicSweeper", "params": {"threads": "1,2"}}}})
    parsed = OverridesParser.create().parse_overrides(["threads=1,2", *overrides])
    expected = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    assert sweep_jobs(config, overrides) == expected


def test_a_glob_sweep_lists_the_groups_options():
    sweep = compose_sweep(parse_command(["-m", "+experiment=digits", "model=glob([svc,logreg])"]))
    assert sweep.jobs == [["+experiment=digits", "model=logreg"], ["+experiment=digits", "model=svc"]]


def test_a_sweep_composes_its_own_config_without_the_sweeps_and_each_job_with_its_own():
    command = parse_command(["-m", "+experiment=digits", "acquisition=entropy,margin", "seed=0,1",
                             "hydra.sweep.dir=/tmp/sweep-x"])
    sweep = compose_sweep(command)
    assert sweep.config.acquisition.name == "diverse_margin"  # the experiment's, not a swept one
    assert sweep.jobs == [["+experiment=digits", "acquisition=entropy", "seed=0"],
                          ["+experiment=digits", "acquisition=entropy", "seed=1"],
                          ["+experiment=digits", "acquisition=margin", "seed=0"],
                          ["+experiment=digits", "acquisition=margin", "seed=1"]]


def test_the_run_config_is_the_one_hydra_main_composes(tmp_path):
    # --cfg job prints what @hydra.main composed; compose_run must give the same config.
    from tests.conftest import run_cli

    shown = run_cli("+experiment=mnist", "seed=3", "--cfg", "job")
    assert shown.returncode == 0, shown.stderr
    ours = compose_run(Command(("+experiment=mnist", "seed=3")))
    ours_job = OmegaConf.to_container(ours, resolve=False)
    ours_job.pop("hydra")
    assert OmegaConf.create(shown.stdout) == OmegaConf.create(ours_job)


def test_an_extra_config_dir_is_searched_after_conf_as_with_hydra(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "mine.yaml").write_text("name: mine\nsource:\n  _target_: plugins.sources.offline.digits\n"
                                                    "test_size: 100\n")
    (tmp_path / "primary.yaml").write_text("defaults:\n  - config\n  - _self_\nseed: 5\n")
    command = Command(("project=mine",), config_dir=str(tmp_path), config_name="primary")
    config = compose_run(command)
    assert config.project.name == "mine" and config.seed == 5 and config.acquisition.name == "diverse_margin"
    with pytest.raises(ConfigError, match="--config-dir .* is not a directory"):
        compose_run(Command((), config_dir=str(tmp_path / "nope")))


def test_config_path_names_a_directory():
    with pytest.raises(ConfigError, match="name a directory"):
        compose_run(Command((), config_path="pkg://plugins"))
    assert compose_run(Command((), config_path=str(REPO / "conf"))).seed == 0
