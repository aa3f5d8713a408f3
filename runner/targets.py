"""Which objects a config may have created: every ``_target_`` (Hydra's own sections included) and the callables
of Hydra's logging sections, resolved without calling them and refused in one line unless a rule allows them.

The rules: public classes and functions of ``plugins.<kind>.<module>`` modules (a module's ``__all__`` narrows
them), scikit-learn's estimator classes, Hydra's own launcher, sweeper and callbacks and the documented launchers,
logging classes, and whatever the config lists in ``allowed_packages``. Nothing is imported outside a package
one of the rules covers.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from runner.errors import ConfigError, did_you_mean, install_hint
from runner.settings import RUNNER_ARGUMENTS

# The keys Hydra's ``instantiate`` reads itself; every other key of a target node is an argument.
INSTANTIATE_KEYS = frozenset({"_target_", "_args_", "_partial_", "_convert_", "_recursive_"})
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Hydra reads ``class`` and ``()`` in its logging sections as callables (Python's logging.config.dictConfig).
_LOGGING_CALLABLE_KEYS = ("class", "()")
_LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
# Packages that resolve names into callables themselves, or that the built-in rules already cover with a
# narrower rule: listing them in allowed_packages would open every target there is.
_NEVER_LISTED = ("builtins", "__main__", "hydra", "hydra_plugins", "omegaconf", "runner", "plugins", "sklearn")


@dataclass(frozen=True)
class TargetRule:
    """Objects defined in ``package`` (that module or any module below it) that ``accepts`` takes."""

    package: str
    accepts: Callable[[Any], bool]

    def covers(self, dotted: str) -> bool:
        return dotted == self.package or dotted.startswith(self.package + ".")


def _is_class_or_function(obj: Any) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj)


def _is_plugin(obj: Any) -> bool:
    # Plugins live in plugins.<kind>.<module>; the shared helpers at the top (plugins.files, plugins.errors)
    # and private names are not plugins. A module that lists its public names in __all__ (one that also holds
    # helpers with side effects, such as an export's command line) offers only those.
    parts = [*obj.__module__.split("."), obj.__name__]
    if not _is_class_or_function(obj) or len(parts) < 4 or any(p.startswith("_") for p in parts[1:]):
        return False
    public = getattr(importlib.import_module(obj.__module__), "__all__", None)
    return public is None or obj.__name__ in public


def _is_sklearn_estimator(obj: Any) -> bool:
    from sklearn.base import BaseEstimator

    return inspect.isclass(obj) and issubclass(obj, BaseEstimator) and not obj.__name__.startswith("_")


def _subclass_of(module: str, name: str) -> Callable[[Any], bool]:
    def accepts(obj: Any) -> bool:
        return inspect.isclass(obj) and issubclass(obj, getattr(importlib.import_module(module), name))

    return accepts


_LAUNCHER = _subclass_of("hydra.plugins.launcher", "Launcher")
TASK_RULES = (TargetRule("plugins", _is_plugin), TargetRule("sklearn", _is_sklearn_estimator))
TASK_ALLOWED = "public classes and functions of plugins.<kind> modules, scikit-learn estimator classes"
# Hydra instantiates these itself (hydra.launcher, hydra.sweeper, hydra.callbacks): its own basic launcher and
# sweeper (see hydra_defaults), its callbacks, and the launchers docs/sweeps.md documents.
HYDRA_RULES = (
    TargetRule("hydra.experimental.callbacks", _subclass_of("hydra.experimental.callback", "Callback")),
    TargetRule("hydra_plugins.hydra_joblib_launcher", _LAUNCHER),
    TargetRule("hydra_plugins.hydra_submitit_launcher", _LAUNCHER),
    TargetRule("hydra_plugins.hydra_ray_launcher", _LAUNCHER),
)
HYDRA_ALLOWED = "Hydra's basic launcher, sweeper and callbacks, the joblib, submitit and Ray launchers"
LOGGING_RULES = (TargetRule("logging", inspect.isclass),)
LOGGING_ALLOWED = "classes of Python's logging package"


@cache
def hydra_defaults() -> frozenset[str]:
    """The targets of Hydra's own basic launcher and sweeper, as Hydra's own configs (``hydra/launcher/basic``,
    ``hydra/sweeper/basic``) name them: allowed by name, the objects Hydra runs when nothing else is chosen."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's core plugins register their configs when it scans them
    store = ConfigStore.instance()
    return frozenset(str(store.load(f"hydra/{group}/basic.yaml").node["_target_"]) for group in ("launcher", "sweeper"))


def user_packages(config: Mapping[str, Any]) -> tuple[TargetRule, ...]:
    """One rule per package the config lists in ``allowed_packages``: any class or function defined there."""
    listed = config.get("allowed_packages") or []
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ConfigError(f"config key 'allowed_packages' must be a list of package names (got {listed!r})")
    rules = []
    for i, name in enumerate(listed):
        key = f"allowed_packages[{i}]"
        if not _PACKAGE.fullmatch(name):
            raise ConfigError(f"config key '{key}' must be a package name such as xgboost (got {name!r})")
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in _NEVER_LISTED:
            raise ConfigError(
                f"config key '{key}' cannot list '{name}': Python's standard library and "
                f"{', '.join(_NEVER_LISTED[2:])} are never allowed wholesale"
            )
        rules.append(TargetRule(name, _is_class_or_function))
    return tuple(rules)


def check_targets(config: Mapping[str, Any], packages: Sequence[TargetRule] = ()) -> None:
    """Refuse, in one line naming the key and the target, the first object ``config`` would have Hydra create
    that no rule allows: every ``_target_`` at any depth (under ``hydra`` too) and the callables of Hydra's
    logging sections. Nothing is called, and nothing is imported outside the allowed packages."""
    for path, node in target_nodes(config):
        key = _join(path, "_target_")
        if _under_hydra(key) and node["_target_"] in hydra_defaults():
            continue
        rules, allowed = (HYDRA_RULES, HYDRA_ALLOWED) if _under_hydra(key) else (TASK_RULES, TASK_ALLOWED)
        resolve_target(key, node["_target_"], (*rules, *packages), _allowed_text(allowed, packages))
    hydra = config.get("hydra")
    sections = ("job_logging", "hydra_logging") if isinstance(hydra, Mapping) else ()
    for section in sections:
        assert isinstance(hydra, Mapping)
        for key, value in _logging_callables(hydra.get(section), f"hydra.{section}"):
            if isinstance(value, str) and value.startswith("ext://"):
                if value not in _LOGGING_STREAMS:
                    raise ConfigError(f"config key '{key}' names '{value}'; allowed: {', '.join(_LOGGING_STREAMS)}")
            else:
                resolve_target(key, value, (*LOGGING_RULES, *packages), _allowed_text(LOGGING_ALLOWED, packages))


def check_arguments(config: Mapping[str, Any], packages: Sequence[TargetRule] = ()) -> None:
    """Refuse argument names a target does not take, and (through scikit-learn's own parameter validation)
    estimator argument values it would only refuse at fit, naming the key."""
    for path, node in target_nodes(config):
        if _under_hydra(path):
            continue
        key = _join(path, "_target_")
        obj = resolve_target(key, node["_target_"], (*TASK_RULES, *packages), _allowed_text(TASK_ALLOWED, packages))
        _check_argument_names(path, node, obj)
        if _is_sklearn_estimator(obj) and obj.__module__.startswith("sklearn."):
            _check_estimator_values(path, node, obj)


def resolve_target(key: str, target: Any, rules: Sequence[TargetRule], allowed: str) -> Any:
    """The class or function ``target`` names, found without calling it and importing only inside a package
    that one of ``rules`` covers; :class:`ConfigError` (one line naming ``key``) unless a rule accepts it.

    The object must be an attribute of the module the path leads to (no hops through another module's
    attributes) and be defined where it says it is (``obj.__module__``), so a re-export does not count.
    """
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise ConfigError(f"config key '{key}' must be the dotted path of a class or function (got {target!r})")
    named = f"config key '{key}' names '{target}'"
    if not any(rule.covers(target) for rule in rules):
        raise ConfigError(f"{named}, outside the allowed targets ({allowed})")
    module, rest = _import_longest_module(target, named)
    if not rest:
        raise ConfigError(f"{named}, a module; name a class or function in it")
    if len(rest) > 1:
        raise ConfigError(
            f"{named}, which reaches '{'.'.join(rest)}' through an attribute of module '{module.__name__}'; "
            "name the class or function in the module that defines it"
        )
    try:
        obj = getattr(module, rest[0])
    except AttributeError:
        closest = difflib.get_close_matches(rest[0], _allowed_names(module, rules), n=3, cutoff=0.0)
        hint = f"; closest: {', '.join(closest)}" if closest else ""
        raise ConfigError(f"{named}, but module '{module.__name__}' has no '{rest[0]}'{hint}") from None
    if not _is_class_or_function(obj):
        kind = "module" if inspect.ismodule(obj) else type(obj).__name__
        raise ConfigError(f"{named}, a {kind}, not a class or function")
    home = sys.modules.get(getattr(obj, "__module__", None) or "")
    qualname = getattr(obj, "__qualname__", "")
    if home is None or getattr(home, qualname, None) is not obj:
        raise ConfigError(f"{named}, which is not defined at the top of module '{obj.__module__}'")
    if not any(rule.covers(obj.__module__) and rule.accepts(obj) for rule in rules):
        raise ConfigError(f"{named}, defined as '{obj.__module__}.{qualname}', outside the allowed targets ({allowed})")
    return obj


def target_nodes(node: Any, prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(dotted path, node)`` for every mapping in ``node`` that has a ``_target_`` key, at any depth."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield prefix, node
        for key, value in node.items():
            yield from target_nodes(value, _join(prefix, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{prefix}[{i}]")


def _import_longest_module(target: str, named: str) -> tuple[Any, list[str]]:
    """The deepest module along ``target`` (importing submodules only where the path names one) and the rest."""
    parts = target.split(".")
    try:
        module = importlib.import_module(parts[0])
        depth = 1
        while depth < len(parts) and hasattr(module, "__path__"):
            name = ".".join(parts[: depth + 1])
            if importlib.util.find_spec(name) is None:
                break
            module = importlib.import_module(name)
            depth += 1
    except Exception as exc:  # an allowed package that fails on import: reported, not raised
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"{named}, but it cannot be imported: {type(exc).__name__}: {reason}{install_hint(exc)}") from None
    return module, parts[depth:]


def _allowed_names(module: Any, rules: Sequence[TargetRule]) -> list[str]:
    """The names in ``module`` a target may use (for suggestions)."""
    names = []
    for name in dir(module):
        obj = getattr(module, name, None)
        allowed = _is_class_or_function(obj) and any(r.covers(obj.__module__) and r.accepts(obj) for r in rules)
        if allowed and not name.startswith("_"):
            names.append(name)
    return names


def _logging_callables(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Entries of a logging.config dictionary that name something to import: ``class``, ``()``, ``ext://``."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{prefix}.{key}"
            if key in _LOGGING_CALLABLE_KEYS or (isinstance(value, str) and value.startswith("ext://")):
                yield path, value
            else:
                yield from _logging_callables(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _logging_callables(value, f"{prefix}[{i}]")


def _check_argument_names(path: str, node: Mapping[str, Any], obj: Any) -> None:
    args = node.get("_args_", [])
    if not isinstance(args, list):
        raise ConfigError(f"config key '{_join(path, '_args_')}' must be a list (got {args!r})")
    kwargs = {k: v for k, v in node.items() if k not in INSTANTIATE_KEYS and k not in RUNNER_ARGUMENTS.get(path, ())}
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # no signature to check against; the call itself will say
        return
    parameters = signature.parameters.values()
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        for name in kwargs:
            if name not in names:
                raise ConfigError(
                    f"config key '{_join(path, name)}' is not an argument of {node['_target_']}; "
                    f"its arguments: {', '.join(names) or 'none'}{did_you_mean(name, names)}"
                )
    try:
        signature.bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"config key '{_join(path, '_args_')}' does not fit {node['_target_']}: {exc}") from None


def _check_estimator_values(path: str, node: Mapping[str, Any], estimator_class: type) -> None:
    kwargs = {k: v for k, v in node.items() if k not in INSTANTIATE_KEYS}
    if "_args_" in node or any(_has_target(value) for value in kwargs.values()):
        return  # nested objects are checked as their own nodes; their values exist only once instantiated
    try:
        # scikit-learn estimators only store their arguments when constructed; fit validates them. Validate now.
        estimator_class(**kwargs)._validate_params()
    except (TypeError, ValueError) as exc:  # scikit-learn's InvalidParameterError is both
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        named = re.match(r"The '(\w+)' parameter", text)
        raise ConfigError(f"config key '{_join(path, named.group(1)) if named else path}': {text}") from None


def _has_target(value: Any) -> bool:
    return any(True for _ in target_nodes(value))


def _allowed_text(allowed: str, packages: Sequence[TargetRule]) -> str:
    return f"{allowed}; allowed_packages: {', '.join(rule.package for rule in packages) or 'none'}"


def _under_hydra(key: str) -> bool:
    return key == "hydra" or key.startswith(("hydra.", "hydra["))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
