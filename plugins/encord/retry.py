"""Retries of platform calls: only errors a later attempt may not meet, with jittered exponential backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

# Nothing here is a config _target_: these are the package's helpers (see runner.targets).
__all__ = []

log = logging.getLogger("runner")
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors that a later attempt may not meet: timeouts, rate limits, server and connection errors."""
    from encord import exceptions as ex

    transient: tuple[type[BaseException], ...] = (
        ex.TimeOutError,
        ex.RequestException,
        ex.RateLimitExceededError,
        ex.GenericServerError,
        ex.UnknownException,
        ConnectionError,
        TimeoutError,
    )
    try:
        import requests

        transient += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # requests comes with encord; guard only for trimmed environments
        pass
    if isinstance(exc, transient):
        return True
    # urllib reports refused connections and HTTP 5xx/429 as URLError/HTTPError (both OSError).
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code == 429 or code >= 500
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError)


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` tries; before try k+1 a wait drawn from [d/2, d], d = ``base_delay * 2**(k-1)``
    capped at ``max_delay``. ``sleep`` is injectable so that tests do not wait."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def call(self, what: str, function: Callable[[], T]) -> T:
        """``function()``, retried on transient errors; the last error is raised as it was."""
        half, cap = self.base_delay / 2, self.max_delay / 2
        # Half of each wait is fixed and half random: parallel downloads that failed together spread out
        # instead of hitting a rate limit together again, and no wait is shorter than half the backoff.
        wait = tenacity.wait_exponential(multiplier=half, max=cap) + tenacity.wait_random_exponential(
            multiplier=half, max=cap
        )

        def announce(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            pause = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                f"{what}: {type(error).__name__}; retrying in {pause:.1f} s "
                f"({state.attempt_number + 1}/{self.attempts})"
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, int(self.attempts))),
            wait=wait,
            retry=tenacity.retry_if_exception(is_transient),
            sleep=self.sleep,
            before_sleep=announce,
            reraise=True,
        )
        return retrying(function)
