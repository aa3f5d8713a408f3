"""The run directory: one run at a time (an exclusive lock), its store, and the config it belongs to.

The lock is an ``flock`` on ``.run.lock``: the kernel releases it when the holder exits, however it exits (kill -9
included), so a crashed run never leaves a stale lock behind. The holder writes who it is into the file, which is
what a refused second run prints.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugins.files import atomic_write_text
from runner import __version__
from runner.errors import ConfigError
from runner.store import GLOBAL_ROUND, Store, read_only

LOCK_FILE = ".run.lock"


class RunDirBusy(ConfigError):
    """Another process is running in this run directory."""


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the block; :class:`RunDirBusy` naming the holder if another has it."""
    path = run_dir / LOCK_FILE
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise ConfigError(f"hydra.run.dir: cannot write to {run_dir} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunDirBusy(f"{run_dir} is in use by another run ({_holder(handle.read())}); wait for it to end "
                             "or use another hydra.run.dir") from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def check_not_busy(run_dir: Path) -> None:
    """Refuse, writing nothing, a run directory another process holds (the lock is taken, then let go)."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below; reading never changes the file
    except OSError:
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"{run_dir} is in use by another run ({_holder(handle.read())}); wait for it to end "
                             "or use another hydra.run.dir") from None


def _holder(text: str) -> str:
    try:
        found = json.loads(text)
        return f"pid {found['pid']} on {found['host']}, started {found['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


@dataclass(frozen=True)
class ConfigRecord:
    """The resolved config as a run directory keeps it: its digest (what makes two runs the same run), its JSON
    (in the store, to name the keys a refused config changed) and its YAML (``config.resolved.yaml``)."""

    sha256: str
    json: str
    yaml: str

    @classmethod
    def of(cls, config: dict[str, Any]) -> ConfigRecord:
        from omegaconf import OmegaConf

        return cls(config_sha256(config), json.dumps(config, sort_keys=True),
                   OmegaConf.to_yaml(OmegaConf.create(config)))


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two plain configs differ (for the message that refuses a changed config)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                keys.append(sub)
            else:
                keys.extend(differing_keys(old[key], new[key], sub))
        return keys
    return [] if old == new else [prefix or "<root>"]


def check_claim(run_dir: Path, record: ConfigRecord, fingerprint: str | None, project_name: str) -> None:
    """Refuse, reading only, a run directory whose store holds a run of another config or of other data (the
    fingerprint, where known)."""
    state = run_dir / "state.sqlite"
    found = read_only(state, "SELECT value FROM meta WHERE key = 'config_sha256'")
    if found is not None and found[0] != record.sha256:
        old = read_only(state, "SELECT value FROM meta WHERE key = 'config_json'")
        changed = differing_keys(json.loads(old[0] if old else "{}"), json.loads(record.json))
        raise ConfigError(
            f"{run_dir} holds a run with a different config (changed: {', '.join(changed[:5])}); "
            "use a new hydra.run.dir or the original config"
        )
    imported = read_only(state, "SELECT 1 FROM stages WHERE round = ? AND stage = 'import'", (GLOBAL_ROUND,))
    data = read_only(state, "SELECT value FROM meta WHERE key = 'data_fingerprint'")
    if fingerprint is not None and imported is not None and (data is None or data[0] != fingerprint):
        raise ConfigError(f"the data of project '{project_name}' changed since {run_dir} was started")


def claim(store: Store, run_dir: Path, record: ConfigRecord) -> None:
    """Record the config as the run's own (the run directory was checked by :func:`check_claim`)."""
    if store.get_meta("config_sha256") is None:
        with store.transaction() as tx:
            tx.set_meta("config_sha256", record.sha256)
            tx.set_meta("config_json", record.json)
            tx.set_meta("runner_version", __version__)
    write_resolved_config(run_dir, record)


def write_resolved_config(run_dir: Path, record: ConfigRecord) -> None:
    atomic_write_text(run_dir / "config.resolved.yaml", record.yaml)
