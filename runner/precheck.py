"""What ``python -m runner`` checks before Hydra runs anything: Hydra creates the run directory, writes into it and
instantiates callbacks, logging handlers, launchers and sweepers before the job starts, so a config that must
not run is refused here, in one line with exit code 2, leaving every directory as it was.

For a single run: the whole config is validated (keys, types, ranges, every ``_target_``, estimator arguments),
and the run directory must be one this run may use (writable; not busy; not holding another run or project; a
store that is not damaged), all read without writing. For a sweep: Hydra's own sections of the sweep and of every
job, each job's ``_target_``s and its directory (a job's other mistakes fail only that job, as it runs). Always:
the Hydra sections Hydra configures itself (logging, callbacks, launcher, sweeper), the environment variables
and shell lines a config would hand to the job's processes, and credentials typed into a config
(``runner.preflight``). Informational flags (``--help``, ``--cfg``) get the checks of what they configure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from runner.composition import Command, compose_job, compose_run, compose_sweep, parse_overrides
from runner.errors import ConfigError
from runner.preflight import check_environment, check_launcher, check_output_dir, check_search_path, check_secrets

# The parts of Hydra's own config that it instantiates or hands to logging.config (which imports and calls):
# those of the whole command, and the one each job reads again from its own config.
COMMAND_SECTIONS = ("launcher", "sweeper", "callbacks", "hydra_logging")
JOB_SECTIONS = (*COMMAND_SECTIONS, "job_logging")


def check_command(command: Command) -> None:
    """Raise :class:`ConfigError` for what ``command`` must not run."""
    if command.shell_completion:
        return
    if command.experimental_rerun is not None:
        raise ConfigError("--experimental-rerun loads a pickled config; replay a run with python -m runner.replay")
    overrides = parse_overrides(command.overrides)
    check_search_path(overrides, command.config_path)  # before composing: Hydra imports a pkg:// source to read it
    asked = [str(o.value()) for o in overrides if o.key_or_group == "hydra.mode"][-1:] == ["MULTIRUN"]
    if command.shows_help and not (command.overrides or command.config_path or command.config_dir
                                   or command.config_name):
        return  # the shipped configs alone: nothing of the user's to check, and --help stays quick
    if command.shows_help or command.cfg is not None:
        # Nothing runs, but Hydra configures its own logging from the config to say so.
        config = compose_run(command, [o.input_line for o in overrides if not o.is_sweep_override()])
        check_hydra(config, ("hydra_logging",))
        return
    if command.multirun or asked:
        check_sweep(command)
        return
    config = compose_run(command)
    if config.hydra.mode is not None and str(config.hydra.mode).endswith("MULTIRUN"):  # set in a config file
        check_sweep(command)
        return
    check_job(config, "hydra.run.dir", None, whole=True)


def check_sweep(command: Command) -> None:
    sweep = compose_sweep(command)
    check_hydra(sweep.config, COMMAND_SECTIONS)
    check_output_dir(resolved(sweep.config, "hydra.sweep.dir"), "hydra.sweep.dir")
    for number, job in enumerate(sweep.jobs):
        check_job(compose_job(command, job, number), "hydra.sweep.dir", "hydra.sweep.subdir", whole=False)


def check_job(cfg: DictConfig, dir_key: str, subdir_key: str | None, whole: bool) -> None:
    """Check one job's config as Hydra's ``run_job`` will see it (output directory set, Hydra section removed).

    ``whole``: the full validation a run does first (schema, targets, arguments) and the run directory's claim;
    otherwise (a sweep job, whose other mistakes fail only that job) the targets alone.
    """
    from copy import deepcopy

    from omegaconf import open_dict, read_write

    from runner.targets import check_targets, user_packages
    from runner.validation import validate

    task_cfg = deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    # A credential read from the environment anywhere, Hydra's section included (a run directory named after a
    # key, a key copied into hydra.yaml), the user's own keys named first (Hydra's override_dirname repeats them).
    check_secrets(OmegaConf.to_container(task_cfg, resolve=False), {})
    check_secrets({"hydra": OmegaConf.to_container(cfg.hydra, resolve=False)}, {})
    output_dir = prepare_output_dir(cfg, dir_key, subdir_key)
    check_hydra(cfg, JOB_SECTIONS)
    try:
        config = cast(dict[str, Any], OmegaConf.to_container(task_cfg, resolve=True, throw_on_missing=True))
    except Exception as exc:  # OmegaConf and resolver errors alike
        if not whole:
            return  # this job fails on it before anything is created; the other jobs may run
        raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from None
    check_secrets({}, config)  # a credential's value pasted in
    check_output_dir(output_dir, dir_key)
    limit_threads(config)
    run_dir = Path(output_dir).resolve()
    if already_finished(config, run_dir):
        return  # the job answers from its record and creates nothing from this config
    if whole:
        validate(config)
        check_run_dir(config, run_dir)
    else:
        check_targets(config, user_packages(config))


def check_hydra(cfg: DictConfig, names: tuple[str, ...]) -> None:
    """The Hydra sections Hydra creates things from before the job starts, resolved as Hydra resolves them: their
    targets and logging callables, the environment they set and the shell lines they run."""
    from runner.targets import check_targets, user_packages

    sections = {}
    for name in (*names, "job"):
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
    check_environment(sections)
    check_secrets({}, {"hydra": {"job": sections["job"]}})
    check_launcher(sections)
    sections.pop("job")
    check_targets({"hydra": sections}, user_packages({"allowed_packages": packages}))


def check_run_dir(config: dict[str, Any], run_dir: Path) -> None:
    """The run directory's claim, read only: busy, a damaged store, another run's config or another project."""
    from runner.platform_labeller import check_identity_readonly
    from runner.rundir import ConfigRecord, check_claim, check_not_busy
    from runner.store import check_readable

    check_not_busy(run_dir)
    check_readable(run_dir / "state.sqlite")
    if config["loop"]["mode"] == "human":
        check_identity_readonly(config, run_dir)
    else:
        check_claim(run_dir, ConfigRecord.of(config), None, str(config["project"]["name"]))


def already_finished(config: dict[str, Any], output_dir: Path) -> bool:
    """Whether the job will only return the recorded summary of this very config (see ``runner.app.run_job``)."""
    from runner.app import finished_summary

    human = (config.get("loop") or {}).get("mode") == "human"
    return not human and finished_summary(config, output_dir) is not None


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


def resolved(cfg: DictConfig, key: str) -> str:
    try:
        return str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except Exception as exc:
        raise ConfigError(f"config key '{key}' cannot be resolved: {str(exc).splitlines()[0]}") from None


def limit_threads(config: dict[str, Any]) -> None:
    """Thread counts into the environment before the checks import numpy, as the job does before its imports
    (BLAS reads them when it loads); each job of a sweep sets its own again."""
    from runner.app import THREAD_VARIABLES

    threads = config.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:  # the schema's to report
        return
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
