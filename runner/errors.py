"""Errors the runner reports as one line and an exit code, never as a traceback."""

import difflib
import shlex
from collections.abc import Sequence
from pathlib import Path

# The packages of the optional extras in pyproject.toml, and the extra that brings each: a config that names
# one without it installed is told what to install, not only which module is missing.
OPTIONAL_EXTRAS = {"xgboost": "boost", "lightgbm": "boost", "ray": "distributed"}

# What a shell reports for a process ended by SIGINT (128 + 2); scripts that run the CLI can tell Ctrl-C apart.
INTERRUPTED_EXIT_CODE = 130


class RunnerError(Exception):
    """A failure the user can act on; ``exit_code`` is what the process exits with."""

    exit_code = 1


class ConfigError(RunnerError):
    """The composed configuration, or the data it points at, is not allowed."""

    exit_code = 2


class PluginError(RunnerError):
    """A plugin returned something that breaks its contract (caught at a stage boundary)."""

    exit_code = 3


def from_plugin(exc: BaseException) -> RunnerError:
    """The runner's error for a plugin's reported failure (see ``plugins/errors.py``); others pass through."""
    from plugins.errors import InputError, ServiceError

    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, InputError):
        return ConfigError(str(exc))
    if isinstance(exc, ServiceError):
        return RunnerError(str(exc))
    raise TypeError(f"not a reported plugin failure: {type(exc).__name__}")


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def interrupted_line(argv: Sequence[str], key: str, directory: Path | str | None) -> str:
    """The one line a Ctrl-C ends with: the command that resumes the run. Every stage commits with its own
    record, so the same command in the same directory goes on where it stopped; ``key`` (``hydra.run.dir`` or
    ``hydra.sweep.dir``) is added when the command did not name the directory, which otherwise is new each time."""
    named = any(arg.lstrip("+~").startswith(f"{key}=") for arg in argv)
    args = list(argv) if named or directory is None else [*argv, f"{key}={directory}"]
    return f"interrupted; resume with: {shlex.join(['python', '-m', 'runner', *args])}"


def install_hint(exc: BaseException) -> str:
    """``'; install it with pip install -e ".[EXTRA]"'`` when ``exc`` is the import of an optional extra's package
    failing, else ""."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    extra = OPTIONAL_EXTRAS.get(exc.name.partition(".")[0])
    return f"; install it with pip install -e \".[{extra}]\"" if extra else ""
