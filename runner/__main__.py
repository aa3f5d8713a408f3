"""``python -m runner +experiment=NAME``: one run (or, with ``-m``, a sweep) of the active-learning loop.

Only Hydra is imported at start-up; the loop, numpy, scikit-learn and torch load inside the job, so
``python -m runner --help`` stays fast.

Before Hydra runs anything, the command line is composed once with Hydra's public Compose API and checked
(``runner.precheck``): a composition mistake, a ``_target_`` outside the allowed packages (Hydra's launcher,
sweeper, callbacks and logging included), a bad config value, environment or shell lines handed to the job, a
credential in the config, or a run directory that cannot be used ends in one line and exit code 2, before Hydra
creates the run directory or instantiates a callback, which it does before the job starts.
"""

from __future__ import annotations

import sys
from typing import Any

# jsonschema imports its optional format checkers when it is imported; where the optional rfc3987_syntax is
# installed that compiles grammars for about a second. The runner checks no string formats, so the CLI keeps
# that module from loading.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None makes the import fail fast

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from runner.composition import CONFIG_NAME, CONFIG_PATH  # noqa: E402


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def run(cfg: DictConfig) -> dict[str, Any] | None:
    from runner.app import run_job

    return run_job(cfg)


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    if given in (["--help"], ["-h"]):
        from runner.hydra_configs import help_text

        print(help_text())
        return
    from runner.composition import parse_command
    from runner.errors import INTERRUPTED_EXIT_CODE, ConfigError, interrupted_line

    try:
        try:
            from runner.precheck import check_command

            check_command(parse_command(given))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        run()  # a Ctrl-C inside the job is answered there, where the run directory is known
    except KeyboardInterrupt:
        # Outside the job (the pre-check, Hydra's start) nothing of the run is written yet, so the same command
        # starts it afresh.
        print(interrupted_line(given, "hydra.run.dir", None), file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
    main()
