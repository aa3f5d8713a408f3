"""Creating plugins from config nodes, with failures reported as one config line."""

from __future__ import annotations

import re
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from plugins.errors import InputError, ServiceError
from runner.errors import ConfigError, RunnerError, from_plugin, install_hint


def instantiate_node(node: dict[str, Any], what: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` on a plain dict; any failure becomes a :class:`ConfigError` naming ``what``."""
    try:
        return instantiate(OmegaConf.create(node), **kwargs)
    except Exception as exc:  # Hydra wraps every failure in its own exception types
        cause = exc.__cause__
        if isinstance(cause, InputError | ServiceError | RunnerError):  # a plugin's own one-line message
            raise from_plugin(cause) from None
        text = str(exc).strip()
        if cause is not None:
            # A plugin that imports an optional extra's package when it is built says which extra to install.
            reason = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}{install_hint(cause)}"
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        # Hydra names the failing node relative to the one instantiated ("estimator" inside a model).
        inner = re.search(r"^full_key: (\S+)$", text, re.MULTILINE)
        where = f" (at '{inner.group(1)}' in it)" if inner else ""
        raise ConfigError(f"{what} could not be created{where}: {reason}") from None


def instantiate_callable(node: dict[str, Any], what: str) -> Any:
    """The callable a config node names: a function with the node's other keys bound (a partial), or an
    instance of a class built from them (a class whose instances are called, e.g. a combination of functions)."""
    try:
        target = get_object(node["_target_"])
    except Exception:  # reported with the usual message by instantiate_node below
        target = None
    return instantiate_node(node, what, **({} if isinstance(target, type) else {"_partial_": True}))
