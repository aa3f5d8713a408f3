"""Checks of what a config would make Hydra and its launchers do outside the runner, before they do it.

- config sources that Hydra would import (``pkg://`` search paths);
- a run directory that cannot be created or written (a file, a path under a file, a read-only or virtual file
  system such as ``/proc``, where ``os.access`` says yes to root);
- environment variables that ``hydra.job.env_set`` would set for the job and every child process (joblib or Ray
  workers): only thread counts, unless the user allows more in their own environment
  (``AL_RUNNER_ALLOW_ENV_SET=NAME,...``), because ``PYTHONPATH``, ``PYTHONWARNINGS``, ``BROWSER`` and many others
  make the next Python process load or run what they name;
- shell lines that a launcher would run (``hydra.launcher.setup``), unless ``AL_RUNNER_ALLOW_LAUNCHER_SETUP=1``;
- credentials typed into a config (``${oc.env:SOME_API_KEY}`` or a key pasted in): the resolved config is
  written to several files, so a secret in it would be copied there.

The opt-ins are environment variables of the user's own shell: no config file, override or sweep can set them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

ALLOW_ENV_SET = "AL_RUNNER_ALLOW_ENV_SET"
ALLOW_LAUNCHER_SETUP = "AL_RUNNER_ALLOW_LAUNCHER_SETUP"
# What hydra.job.env_set may always set: thread counts, which only limit how many threads a library starts.
THREAD_COUNTS = frozenset({
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "TORCH_NUM_THREADS",
})
# Names of environment variables that hold credentials (a platform's SSH key, an API token, a password, or the
# file that holds one).
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
ENV_INTERPOLATION = re.compile(r"\$\{\s*(?:oc\.env|env)\s*:\s*([A-Za-z_][A-Za-z0-9_]*)")
# A pasted secret shorter than this could be an ordinary word of a config.
SECRET_MIN_LENGTH = 8
LAUNCHER_COMMANDS = ("setup",)


def check_output_dir(path: str, key: str) -> None:
    """Refuse, naming ``key`` and the directory, a run directory that cannot be created or written."""
    directory = Path(path)
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == directory else f"would lie under {existing}, which is"
        kind = "a broken link" if existing.is_symlink() and not existing.exists() else "a file"
        raise ConfigError(f"{key}={path} {where} {kind}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == directory else f"cannot be created: {existing} is not writable"
        raise ConfigError(f"{key}={path} {what}")
    # Root passes every access check, /proc and read-only mounts included: try it, leaving nothing behind.
    try:
        probe = tempfile.mkdtemp(prefix=".al-runner-probe-", dir=existing)
    except OSError as exc:
        what = "is not writable" if existing == directory else f"cannot be created under {existing}"
        raise ConfigError(f"{key}={path} {what} ({exc.strerror or type(exc).__name__})") from None
    os.rmdir(probe)


def check_search_path(overrides: Sequence[Any], config_path: str | None) -> None:
    """Refuse ``pkg://`` config sources outside Hydra and the runner: Hydra imports them while composing."""
    entries = [("--config-path", config_path)] if config_path else []
    for override in overrides:
        if override.key_or_group == "hydra.searchpath":
            value = override.value()
            entries.extend(("hydra.searchpath", entry) for entry in (value if isinstance(value, list) else [value]))
    for where, entry in entries:
        if isinstance(entry, str) and entry.startswith("pkg://"):
            package = entry.removeprefix("pkg://").replace("/", ".").split(".")[0]
            if package not in ("hydra", "hydra_plugins", "plugins"):
                raise ConfigError(
                    f"{where} '{entry}' would import package '{package}' to read configs from it; "
                    "use a directory (file://DIR)"
                )


def check_environment(hydra: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse variables ``hydra.job.env_set`` would set beyond the thread counts and what the user allowed; a
    variable ``hydra.job.env_copy`` copies from the user's own environment is theirs already."""
    job = hydra.get("job") or {}
    env_set, env_copy = dict(job.get("env_set") or {}), set(job.get("env_copy") or [])
    for name in sorted(env_copy):
        if SECRET_NAME.search(str(name)):
            raise ConfigError(
                f"config key 'hydra.job.env_copy' names {name}, which holds a credential: Hydra would write its "
                "value into the run directory (.hydra/hydra.yaml); the plugin that needs it reads the environment"
            )
    allowed = THREAD_COUNTS | {n.strip() for n in environ.get(ALLOW_ENV_SET, "").split(",") if n.strip()}
    for name, value in env_set.items():
        own = name in env_copy and environ.get(name) == value
        if str(name) not in allowed and not own:
            raise ConfigError(
                f"config key 'hydra.job.env_set.{name}' would set {name} for the job and every process it starts; "
                f"only thread counts may be set ({', '.join(sorted(THREAD_COUNTS))}); to allow it, run with "
                f"{ALLOW_ENV_SET}={name} in your environment"
            )


def check_launcher(hydra: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> None:
    """Refuse shell lines a launcher would run (``hydra.launcher.setup``) unless the user allowed them."""
    launcher = hydra.get("launcher") or {}
    for key in LAUNCHER_COMMANDS:
        lines = launcher.get(key)
        if lines and environ.get(ALLOW_LAUNCHER_SETUP) != "1":
            raise ConfigError(
                f"config key 'hydra.launcher.{key}' would run shell lines before each job; to allow them, run with "
                f"{ALLOW_LAUNCHER_SETUP}=1 in your environment"
            )


def check_secrets(unresolved: Any, resolved: Any, environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a credential in the config: an interpolation of a credential's environment variable, or the value
    of one (the resolved config is copied into config.resolved.yaml, the store, summary and report)."""
    for key, value in _strings(unresolved):
        for name in ENV_INTERPOLATION.findall(value):
            if SECRET_NAME.search(name):
                raise ConfigError(
                    f"config key '{key}' reads the environment variable {name}, which holds a credential; "
                    "credentials are read from the environment by the plugin that needs them, never put in a config"
                )
    secrets = {name: v for name, v in environ.items() if SECRET_NAME.search(name) and len(v) >= SECRET_MIN_LENGTH}
    for key, value in _strings(resolved):
        for name, secret in secrets.items():
            if secret in value:
                raise ConfigError(
                    f"config key '{key}' holds the value of the environment variable {name}, a credential; "
                    "never put credentials in a config"
                )


def _strings(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` for every string at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _strings(value, f"{prefix}[{i}]")
    elif isinstance(node, str):
        yield prefix, node
