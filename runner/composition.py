"""The command line composed as Hydra will compose it, through Hydra's public API only, so that it can be checked
before Hydra runs anything (``runner.precheck``).

- :func:`parse_command`: the flags of Hydra's command line (its documented interface), read the way Hydra reads
  them; ``tests/test_composition.py`` compares them with Hydra's own parser, so an upgrade that changes them fails
  loudly there.
- :func:`compose_run`: the config of a single run (``hydra.compose`` under ``hydra.initialize_config_dir``, the
  same search path ``@hydra.main`` builds: Hydra's own configs, ``conf/`` or ``--config-path``, plugins'
  paths, ``--config-dir``, ``hydra.searchpath``, the ConfigStore).
- :func:`compose_sweep`: with ``-m``, the sweep's own config and each job's overrides as Hydra's basic sweeper
  makes them (the cartesian product of ``hydra.sweeper.params`` and the command line's sweeps, in that order),
  and each job's config as its launcher composes it (the sweep's Hydra overrides, then the job's own).
- :func:`describe_composition_error`: one line for whatever Hydra refuses while composing.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError, did_you_mean

RUNNER_DIR = Path(__file__).resolve().parent
CONFIG_PATH = "../conf"  # as @hydra.main in runner/__main__.py names it: relative to this package
CONFIG_NAME = "config"
TASK_NAME = "__main__"  # what Hydra calls the job of `python -m runner`


@dataclass(frozen=True)
class Command:
    """What a ``python -m runner`` command line asks of Hydra."""

    overrides: tuple[str, ...]
    multirun: bool = False
    config_path: str | None = None
    config_name: str | None = None
    config_dir: str | None = None
    cfg: str | None = None  # --cfg job|hydra|all: print the config, run nothing
    shows_help: bool = False  # --help, --hydra-help, --info, --version
    shell_completion: bool = False
    experimental_rerun: str | None = None


def argument_parser() -> argparse.ArgumentParser:
    """Hydra's command-line flags (``python -m runner --hydra-help`` lists them)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--hydra-help", action="store_true")
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--resolve", action="store_true")
    parser.add_argument("--package", "-p")
    parser.add_argument("--run", "-r", action="store_true")
    parser.add_argument("--multirun", "-m", action="store_true")
    parser.add_argument("--shell-completion", "-sc", action="store_true")
    parser.add_argument("--config-path", "-cp")
    parser.add_argument("--config-name", "-cn")
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", const="all", nargs="?",
                        choices=["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"])
    parser.add_argument("overrides", nargs="*")
    return parser


def parse_command(argv: Sequence[str]) -> Command:
    """The command line as Hydra reads it; what Hydra itself would refuse is left to Hydra to say."""
    args, _ = argument_parser().parse_known_args(list(argv))
    return Command(
        overrides=tuple(args.overrides),
        multirun=bool(args.multirun),
        config_path=args.config_path,
        config_name=args.config_name,
        config_dir=args.config_dir,
        cfg=args.cfg,
        shows_help=bool(args.help or args.hydra_help or args.info or args.version),
        shell_completion=bool(args.shell_completion),
        experimental_rerun=args.experimental_rerun,
    )


# --- composing ---------------------------------------------------------------------------------------------------
def parse_overrides(overrides: Sequence[str], loader: Any = None) -> list[Any]:
    """Hydra's reading of ``overrides``; ``loader`` (Hydra's config loader) lets ``glob()`` sweeps list a
    group's options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed: list[Any] = composed(lambda: OverridesParser.create(config_loader=loader).parse_overrides(list(overrides)))
    return parsed


def config_dir(command: Command) -> str:
    """The primary config directory: ``conf/``, or ``--config-path`` (relative to this package, as Hydra has it)."""
    path = command.config_path or CONFIG_PATH
    if path.startswith("pkg://"):
        raise ConfigError(f"--config-path {path}: name a directory")
    return os.path.normpath(os.path.join(RUNNER_DIR, path))


@contextmanager
def hydra_for(command: Command) -> Iterator[None]:
    """Hydra initialised as ``@hydra.main`` initialises it for ``command`` (its search path; see
    :func:`search_path_overrides` for ``--config-dir``)."""
    from hydra import initialize_config_dir

    directory = main_dir(command)
    if not os.path.isdir(directory):
        raise ConfigError(f"--config-path {command.config_path}: no such directory ({directory})")
    with initialize_config_dir(config_dir=directory, job_name=TASK_NAME, version_base="1.3"):
        yield


def main_dir(command: Command) -> str:
    """Where the Compose API starts its search: the primary config directory, or ``--config-dir`` when only that
    holds the primary config (Hydra finds a primary config only on the search path it starts with)."""
    extra = None if command.config_dir is None else Path(command.config_dir).resolve()
    if extra is not None and not extra.is_dir():
        raise ConfigError(f"--config-dir {command.config_dir} is not a directory")
    name = f"{command.config_name or CONFIG_NAME}.yaml"
    primary = config_dir(command)
    if extra is not None and not (Path(primary) / name).is_file() and (extra / name).is_file():
        return str(extra)
    return primary


def search_path_overrides(command: Command, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``--config-dir`` as Hydra places it: searched after the primary directory and plugins'
    paths, before ``hydra.searchpath`` (from the command line, else from the primary config file). Where only
    ``--config-dir`` holds the primary config, the Compose API starts there and the primary directory comes after
    it: a config both hold is then read from ``--config-dir`` here and from ``conf/`` by Hydra, which refuses
    more here, never less."""
    if command.config_dir is None:
        return list(overrides)
    extra = Path(command.config_dir).resolve()
    started = Path(main_dir(command))
    parsed = parse_overrides(overrides)
    given = [o for o in parsed if o.key_or_group == "hydra.searchpath"]
    if given:
        listed = given[-1].value()
        rest = [o.input_line for o in parsed if o.key_or_group != "hydra.searchpath"]
    else:
        listed, rest = primary_search_path(command, extra), list(overrides)
    after = Path(config_dir(command)) if started == extra else extra
    entries = [f"file://{after}", *(listed if isinstance(listed, list) else [listed])]
    return [*rest, "hydra.searchpath=[" + ",".join(_quoted(e) for e in entries) + "]"]


def primary_search_path(command: Command, extra: Path) -> list[Any]:
    """``hydra.searchpath`` of the primary config file (found in the primary directory first, as Hydra finds it)."""
    import yaml

    name = f"{command.config_name or CONFIG_NAME}.yaml"
    for folder in (Path(config_dir(command)), extra):
        if (folder / name).is_file():
            loaded = yaml.safe_load((folder / name).read_text(encoding="utf-8")) or {}
            found = OmegaConf.select(OmegaConf.create(loaded), "hydra.searchpath") if isinstance(loaded, dict) else None
            return list(found) if found is not None else []
    return []


def _quoted(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def compose_run(command: Command, overrides: Sequence[str] | None = None) -> DictConfig:
    """The config Hydra composes for a single run of ``command`` (Hydra's own section included)."""
    given = list(command.overrides if overrides is None else overrides)
    with hydra_for(command):
        return _compose(command, given)


def _compose(command: Command, overrides: list[str]) -> DictConfig:
    from hydra import compose

    with_search_path = search_path_overrides(command, overrides)
    name = command.config_name or CONFIG_NAME
    config: DictConfig = composed(lambda: compose(name, with_search_path, return_hydra_config=True))
    return config


@dataclass(frozen=True)
class Sweep:
    config: DictConfig  # the sweep's own config (its launcher, sweeper, callbacks, sweep directory)
    jobs: list[list[str]]  # each job's overrides


def compose_sweep(command: Command) -> Sweep:
    """The sweep's config (composed with the command line's sweeps left out, as Hydra composes it with ``-m``) and
    each job's overrides (empty when the sweeper is not Hydra's basic one)."""
    parsed = parse_overrides(command.overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    if any(o.is_sweep_override() and o.is_hydra_override() for o in parsed):
        bad = next(o for o in parsed if o.is_sweep_override() and o.is_hydra_override())
        raise ConfigError(f"Sweeping over Hydra's configuration is not supported: '{bad.input_line}'")
    task = [o.input_line for o in parsed if not o.is_hydra_override()]
    with hydra_for(command):
        from hydra.core.global_hydra import GlobalHydra

        config = _compose(command, fixed)
        jobs = sweep_jobs(config, task, GlobalHydra.instance().config_loader())
    return Sweep(config, jobs)


def sweep_jobs(config: DictConfig, task_overrides: Sequence[str], loader: Any = None) -> list[list[str]]:
    """Each job's overrides as Hydra's basic sweeper splits them: ``hydra.sweeper.params`` first, then the
    command line's task overrides; a key named twice keeps its first place and its last value."""
    if str(config.hydra.sweeper.get("_target_", "")).rpartition(".")[2] != "BasicSweeper":
        return []  # the targets check allows no other sweeper
    params = config.hydra.sweeper.get("params")
    listed = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_dict(params) else {}
    assert isinstance(listed, dict)
    arguments = [f"{key!s}={value}" for key, value in listed.items()] + list(task_overrides)
    choices: dict[str, list[str]] = {}
    for override in parse_overrides(arguments, loader):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(f"Hydra's basic sweeper does not sweep '{override.input_line}' (an interval)")
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def compose_job(command: Command, job: list[str], number: int) -> DictConfig:
    """One job's config as its launcher composes it, numbered as launchers number them."""
    from omegaconf import open_dict

    hydra_overrides = [o.input_line for o in parse_overrides(command.overrides) if o.is_hydra_override()]
    config = compose_run(command, [*hydra_overrides, *job])
    with open_dict(config):
        config.hydra.job.id, config.hydra.job.num = number, number
    return config


# --- what Hydra refuses --------------------------------------------------------------------------------------
def composed(compose: Any) -> Any:
    """``compose()``; what Hydra refuses while composing becomes a :class:`ConfigError` of one line."""
    try:
        return compose()
    except ConfigError:
        raise
    except Exception as exc:  # Hydra's composition raises its own, OmegaConf's and YAML's errors
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        raise ConfigError(describe_composition_error(exc)) from None


def describe_composition_error(exc: BaseException) -> str:
    """One line for what Hydra refuses while composing: an unknown key (with the keys allowed there), an
    unknown choice (with the available ones), a malformed override (with what is wrong), anything else."""
    import re

    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "Config search path:" in lines:  # Hydra appends the search path; the line is long enough without it
        lines = lines[: lines.index("Config search path:")]
    if isinstance(exc, OverrideParseException):
        return _malformed(str(exc.override), lines)
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        options = list(exc.options)
        return (
            f"unknown choice '{choice}' for config group '{group}'; available: {', '.join(options) or 'none'}"
            f"{did_you_mean(choice, options)}"
        )
    cause = exc.__cause__
    if (
        isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key
        and lines and lines[0].startswith("Could not override")
    ):
        parent = cause.parent_node
        keys = sorted(str(k) for k in parent) if parent is not None else []
        append = re.search(r"use (\+\S+)", str(exc))
        hint = did_you_mean(str(cause.key), keys) or (f"; to add it write {append.group(1)}" if append else "")
        if not keys:  # a key below a plain value
            return f"unknown config key '{cause.full_key}'; '{cause.full_key.rpartition('.')[0]}' holds no keys"
        return f"unknown config key '{cause.full_key}'; allowed keys here: {', '.join(keys)}{hint}"
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return " ".join(lines) or type(exc).__name__


def _malformed(override: str, lines: list[str]) -> str:
    """One line for an override Hydra cannot parse. A bare word (``mnist``) is most often an experiment's name
    typed without ``+experiment=``; the parser's own words ("missing EQUAL at '<EOF>'") do not say that."""
    import re

    if re.fullmatch(r"[A-Za-z_][\w-]*", override):
        experiments = sorted(p.stem for p in (RUNNER_DIR / CONFIG_PATH / "experiment").glob("*.yaml"))
        if override in experiments:
            return f"'{override}' is not an override (key=value); did you mean +experiment={override}?"
        return (f"'{override}' is not an override (key=value); to run an experiment write +experiment=NAME, "
                f"one of: {', '.join(experiments)}{did_you_mean(override, experiments)}")
    reason = [line for line in lines if not line.startswith(("See https://", "Error parsing override"))]
    return f"malformed override '{override}': {'; '.join(reason) or 'cannot be parsed'}"
