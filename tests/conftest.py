"""Shared helpers: compose a config and run it in this process, or run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300, python_args: tuple[str, ...] = ("-m", "runner"),
            env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONHASHSEED"] = "0"
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, *python_args, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def compose_config(*overrides: str) -> dict:
    """The resolved config the CLI would run for ``overrides`` (without Hydra's own ``hydra`` section)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def run_in_process(run_dir: Path, *overrides: str) -> dict:
    """One run of ``overrides`` into ``run_dir`` in this process, one BLAS thread as the CLI's default; the summary.

    For tests where the command line itself is not the point: it skips Hydra's start-up and the interpreter's.
    """
    from threadpoolctl import threadpool_limits

    from runner.app import run
    from runner.environment import threadpools

    threadpools()  # loads every library the environment record lists, so that the limit below reaches them all
    config = compose_config(*overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=int(config["threads"])):
        return run(config, run_dir, int(config["threads"]))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def faults(monkeypatch):
    """Faults injected into every Encord project an export source opens (``tests.encord_fake.Faults``)."""
    from plugins.encord import export as encord_export
    from plugins.encord.standin_project import OfflineProject
    from tests.encord_fake import Faults

    injected = Faults()
    original = OfflineProject.load.__func__

    def load(cls, path, faults=None):
        return original(cls, path, faults=injected)

    monkeypatch.setattr(encord_export.OfflineProject, "load", classmethod(load))
    return injected
