"""The job Hydra runs: resolve the config, run the loop, turn known failures into one line and an exit code."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plugins.errors import InputError, ServiceError
from runner.errors import INTERRUPTED_EXIT_CODE, ConfigError, RunnerError, from_plugin, interrupted_line

log = logging.getLogger("runner")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_job(cfg: DictConfig) -> dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        try:
            config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from None
        from runner.validation import validate

        validate(config)  # once per process: a single run's pre-check did it already; a sweep's job does it here
        human = config["loop"]["mode"] == "human"
        summary = None if human else finished_summary(config, run_dir)
        if summary is not None:
            # A re-run sweep meets its finished jobs again: answer from the record, load and compute nothing.
            log.info(f"{run_dir} already finished; skipping")
            return summary
        threads = int(config["threads"])
        # BLAS and OpenMP read these when they load (numpy, scipy and scikit-learn each bring their own);
        # threadpool_limits covers the ones a launcher's worker process had loaded already.
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(threads)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            return run(config, run_dir, threads)
    except (RunnerError, InputError, ServiceError) as exc:
        exc = from_plugin(exc)
        print(f"error: {exc}", file=sys.stderr)
        log.debug("run failed", exc_info=True)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # In a sweep, exiting would end every other job too; raising lets the launcher record this job as
            # failed, run the rest, and end the sweep with an error once they are done.
            raise
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        # Ctrl-C: every finished stage is committed and the interrupted one rolled back, so one line saying how
        # to go on is all a person needs (not a traceback through the stage that happened to be running).
        sweep = hydra_cfg.mode == RunMode.MULTIRUN
        key, directory = ("hydra.sweep.dir", hydra_cfg.sweep.dir) if sweep else ("hydra.run.dir", run_dir)
        log.debug("interrupted", exc_info=True)
        print(interrupted_line(sys.argv[1:], key, directory), file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)


def run(config: dict[str, Any], run_dir: Path, threads: int) -> dict[str, Any]:
    """Check and build every part of the run, then, holding the run directory, run its rounds."""
    from runner.assemble import assemble
    from runner.compute import open_compute
    from runner.rounds import run_rounds
    from runner.rundir import exclusive
    from runner.session import Session
    from runner.store import Store, unusable

    # Every refusal the config and data allow happens here, before anything is written.
    parts = assemble(config, run_dir)
    if "torch" in sys.modules:  # imported by a torch model plugin; otherwise not worth loading
        sys.modules["torch"].set_num_threads(threads)
    parts.labeller.check(run_dir)  # the run directory's claim, read only
    compute = open_compute(parts.compute, threads)  # an address where no Ray answers is refused before any write
    try:
        with exclusive(run_dir):
            store = Store(run_dir / "state.sqlite", memmap_min_bytes=parts.compute.memmap_min_bytes)
            try:
                parts = dataclasses.replace(parts, data=parts.labeller.claim(store, run_dir, parts.data))
                return run_rounds(Session(parts, store, run_dir, compute), parts.labeller)
            except sqlite3.DatabaseError as exc:  # damage found after the store opened (a truncated page)
                raise unusable(store.path, exc) from None
            finally:
                store.close()
    finally:
        compute.close()


def finished_summary(config: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The recorded summary when ``run_dir`` holds a finished run of exactly ``config``, else None (read-only)."""
    from runner.rundir import config_sha256
    from runner.store import GLOBAL_ROUND, read_only

    state, summary_path = run_dir / "state.sqlite", run_dir / "summary.json"
    if not state.is_file() or not summary_path.is_file():
        return None
    recorded = read_only(state, "SELECT value FROM meta WHERE key = 'config_sha256'")
    done = read_only(state, "SELECT 1 FROM stages WHERE round = ? AND stage = 'finish'", (GLOBAL_ROUND,))
    # A different config falls through to the run, which refuses it with its usual message.
    if done is None or recorded is None or recorded[0] != config_sha256(config):
        return None
    try:
        summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
        return summary
    except (OSError, ValueError):
        return None
