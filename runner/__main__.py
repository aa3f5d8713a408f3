"""``python -m runner +experiment=NAME``: one run (or, with ``-m``, a sweep) of the active-learning loop.

Only Hydra is imported at start-up; the loop, numpy, scikit-learn and torch load inside the job, so
``python -m runner --help`` stays fast.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    from runner.app import run_job

    return run_job(cfg)


if __name__ == "__main__":
    sys.exit(main())
