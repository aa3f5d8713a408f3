"""``python -m runner +experiment=NAME``: one run (or, with ``-m``, a sweep) of the active-learning loop.

Only Hydra is imported at start-up; the loop, numpy, scikit-learn and torch load inside the job, so
``python -m runner --help`` stays fast.
"""

from __future__ import annotations

import sys

# jsonschema imports its optional format checkers when it is imported; where the optional rfc3987_syntax is
# installed that compiles grammars for about a second. The runner checks no string formats, so the CLI keeps
# that module from loading.
sys.modules.setdefault("rfc3987_syntax", None)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    from runner.app import run_job

    return run_job(cfg)


if __name__ == "__main__":
    sys.exit(main())
