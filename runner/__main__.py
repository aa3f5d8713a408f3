"""``python -m runner +experiment=NAME``: one run (or, with ``-m``, a sweep) of the active-learning loop.

Only Hydra is imported at start-up; the loop, numpy, scikit-learn and torch load inside the job, so
``python -m runner --help`` stays fast.

Before Hydra runs anything, the command line is composed once with Hydra's own loader and checked: a
composition mistake (unknown key or choice, malformed override), a ``_target_`` outside the allowed packages
(anywhere, Hydra's launcher, sweeper, callbacks and logging included), a bad config value or a run directory
that cannot be written ends in one line and exit code 2 -- before Hydra creates the run directory or
instantiates a callback, which it does before the job starts.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

# jsonschema imports its optional format checkers when it is imported; where the optional rfc3987_syntax is
# installed that compiles grammars for about a second. The runner checks no string formats, so the CLI keeps
# that module from loading.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None makes the import fail fast

from collections.abc import Callable  # noqa: E402
from typing import TypeVar, cast  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

T = TypeVar("T")

CONFIG_PATH = "../conf"
CONFIG_NAME = "config"
# The parts of Hydra's own config that it instantiates or hands to logging.config (which imports and calls):
# those of the whole command, and the one each job reads again from its own config.
COMMAND_SECTIONS = ("launcher", "sweeper", "callbacks", "hydra_logging")
JOB_SECTIONS = (*COMMAND_SECTIONS, "job_logging")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def run(cfg: DictConfig) -> dict | None:
    from runner.app import run_job

    return run_job(cfg)


def main() -> None:
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args()
    if not (args.help or args.hydra_help or args.info or args.shell_completion or args.experimental_rerun):
        from runner.errors import ConfigError

        try:
            check_command_line(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    run()


def check_command_line(args: argparse.Namespace) -> None:
    """Compose the config as Hydra will for ``args`` and raise :class:`ConfigError` for what must not run."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path, detect_task_name
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import open_dict

    from runner.config import check_output_dir, check_search_path
    from runner.errors import ConfigError

    overrides = list(args.overrides)
    parsed = composed(lambda: OverridesParser.create().parse_overrides(overrides))
    check_search_path(parsed, args.config_path)  # before composing: Hydra imports a pkg:// source to read it
    # Hydra finds conf/ next to this file when it runs as __main__ (python -m runner), the only way it finds it.
    calling_file = os.path.abspath(__file__)
    search_path = composed(
        lambda: create_automatic_config_search_path(calling_file, None, args.config_path or CONFIG_PATH)
    )
    if args.config_dir is not None:
        config_dir = os.path.abspath(args.config_dir)
        if not os.path.isdir(config_dir):
            raise ConfigError(f"--config-dir {args.config_dir} is not a directory")
        search_path.prepend(provider="command-line", path=f"file://{config_dir}",
                            anchor=SearchPathQuery(provider="schema"))
    app = composed(lambda: Hydra.create_main_hydra2(detect_task_name(calling_file, None), search_path))
    try:
        config_name = args.config_name or CONFIG_NAME
        # -m, or hydra.mode=MULTIRUN on the command line (which must be composed as a sweep to parse its values)
        asked = [str(o.value()) for o in parsed if o.key_or_group == "hydra.mode"][-1:] == ["MULTIRUN"]
        mode = RunMode.MULTIRUN if args.multirun or (asked and not args.cfg) else RunMode.RUN
        cfg = composed(lambda: app.compose_config(config_name, overrides, run_mode=mode))
        if args.cfg:
            return
        if mode is RunMode.RUN and cfg.hydra.mode == RunMode.MULTIRUN:  # set in a config file
            mode = RunMode.MULTIRUN
            cfg = composed(lambda: app.compose_config(config_name, overrides, run_mode=mode))
        if mode is RunMode.RUN:
            check_job(cfg, "hydra.run.dir", None, whole=True)
            return
        check_hydra_sections(cfg, COMMAND_SECTIONS)
        check_output_dir(resolved(cfg, "hydra.sweep.dir"), "hydra.sweep.dir")
        for job, job_overrides in enumerate(sweep_jobs(cfg)):
            job_cfg = composed(functools.partial(app.config_loader.load_sweep_config, cfg, job_overrides))
            with open_dict(job_cfg):  # as Hydra's launchers do before they run a job
                job_cfg.hydra.job.id, job_cfg.hydra.job.num = job, job
            check_job(job_cfg, "hydra.sweep.dir", "hydra.sweep.subdir", whole=False)
    finally:
        GlobalHydra.instance().clear()


def check_job(cfg: DictConfig, dir_key: str, subdir_key: str | None, whole: bool) -> None:
    """Check one job's config as Hydra's ``run_job`` will see it (output directory set, Hydra section removed).

    ``whole``: the full validation a run does first (schema, targets, arguments); otherwise (a sweep job,
    whose other mistakes fail only that job) the targets alone.
    """
    from copy import deepcopy

    from omegaconf import OmegaConf, open_dict, read_write

    from runner.config import check_output_dir, check_targets, user_packages, validate
    from runner.errors import ConfigError

    output_dir = prepare_output_dir(cfg, dir_key, subdir_key)
    check_hydra_sections(cfg, JOB_SECTIONS)
    task_cfg = deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    try:
        config = cast(dict, OmegaConf.to_container(task_cfg, resolve=True, throw_on_missing=True))
    except Exception as exc:  # OmegaConf and resolver errors alike
        if not whole:
            return  # this job fails on it before anything is created; the other jobs may run
        raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from None
    if whole:
        check_output_dir(output_dir, dir_key)
    limit_threads(config)
    if already_finished(config, output_dir):
        return  # the job answers from its record and creates nothing from this config
    if whole:
        validate(config)
    else:
        check_targets(config, user_packages(config))


def already_finished(config: dict, output_dir: str) -> bool:
    """Whether the job will only return the recorded summary of this very config (see ``runner.app.run_job``)."""
    from pathlib import Path

    from runner.app import finished_summary

    human = (config.get("loop") or {}).get("mode") == "human"
    return not human and finished_summary(config, Path(output_dir).resolve()) is not None


def check_hydra_sections(cfg: DictConfig, names: tuple[str, ...]) -> None:
    """The targets and logging callables of the Hydra ``names`` sections, which Hydra creates itself before the
    job starts, resolved as Hydra resolves them."""
    from omegaconf import OmegaConf

    from runner.config import check_targets, user_packages
    from runner.errors import ConfigError

    sections = {}
    for name in names:
        try:
            node = cfg.hydra.get(name)
            sections[name] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except Exception as exc:  # an unresolvable section must not be waved through
            raise ConfigError(f"config key 'hydra.{name}' cannot be resolved: {str(exc).splitlines()[0]}") from None
    try:
        listed = cfg.get("allowed_packages")
        packages = OmegaConf.to_container(listed, resolve=True) if OmegaConf.is_list(listed) else listed
    except Exception as exc:
        raise ConfigError(f"config key 'allowed_packages' cannot be resolved: {str(exc).splitlines()[0]}") from None
    check_targets({"hydra": sections}, user_packages({"allowed_packages": packages}))


def prepare_output_dir(cfg: DictConfig, dir_key: str, subdir_key: str | None) -> str:
    """The job's output directory, set into ``hydra.runtime.output_dir`` as Hydra's ``run_job`` sets it, so that
    ``${hydra:runtime.output_dir}`` resolves here as it will in the job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    HydraConfig.instance().set_config(cfg)
    output_dir = resolved(cfg, dir_key)
    if subdir_key is not None:
        output_dir = os.path.join(output_dir, resolved(cfg, subdir_key))
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(output_dir)
    HydraConfig.instance().set_config(cfg)
    return output_dir


def sweep_jobs(cfg: DictConfig) -> list[list[str]]:
    """Each job's overrides, split as Hydra's basic sweeper splits them (the only sweeper the rules allow)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    if cfg.hydra.sweeper.get("_target_") != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
        return []
    params = cfg.hydra.sweeper.get("params")
    params = cast(dict, OmegaConf.to_container(params, resolve=True)) if OmegaConf.is_dict(params) else {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(cfg.hydra.overrides.task)
    parsed = composed(lambda: OverridesParser.create().parse_overrides(arguments))
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def resolved(cfg: DictConfig, key: str) -> str:
    from omegaconf import OmegaConf

    from runner.errors import ConfigError

    try:
        return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except Exception as exc:
        raise ConfigError(f"config key '{key}' cannot be resolved: {str(exc).splitlines()[0]}") from None


def limit_threads(config: dict) -> None:
    """Thread counts into the environment before the checks import numpy, as the job does before its imports
    (BLAS reads them when it loads); each job of a sweep sets its own again."""
    from runner.app import THREAD_VARIABLES

    threads = config.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:  # the schema's to report
        return
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)


def composed(compose: Callable[[], T]) -> T:
    """``compose()``; what Hydra refuses while composing becomes a :class:`ConfigError` of one line."""
    from runner.config import describe_composition_error
    from runner.errors import ConfigError

    try:
        return compose()
    except Exception as exc:  # Hydra's composition raises its own, OmegaConf's and YAML's errors
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise ConfigError(describe_composition_error(exc)) from None


if __name__ == "__main__":
    main()
