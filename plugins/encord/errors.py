"""The platform's failures, as the two kinds every plugin reports (see ``plugins/errors.py``)."""

from __future__ import annotations

from plugins.errors import InputError, ServiceError

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []


class EncordError(ServiceError):
    """The platform could not be read or changed; the message says what to do (exit 1)."""


class CredentialsError(InputError):
    """No usable credentials in the environment (exit 2)."""
