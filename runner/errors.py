"""Errors the runner reports as one line and an exit code, never as a traceback."""


class RunnerError(Exception):
    """A failure the user can act on; ``exit_code`` is what the process exits with."""

    exit_code = 1


class ConfigError(RunnerError):
    """The composed configuration, or the data it points at, is not allowed."""

    exit_code = 2


class PluginError(RunnerError):
    """A plugin returned something that breaks its contract (caught at a stage boundary)."""

    exit_code = 3
