"""The job Hydra runs: resolve the config, run the loop, turn known failures into one line and an exit code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.errors import ConfigError, RunnerError

log = logging.getLogger("runner")


def run_job(cfg: DictConfig) -> dict:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        try:
            config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"config cannot be resolved: {str(exc).splitlines()[0]}") from None
        from runner.loop import open_run

        run = open_run(config, run_dir)
        try:
            return run.execute()
        finally:
            run.store.close()
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        log.debug("run failed", exc_info=True)
        sys.exit(exc.exit_code)
