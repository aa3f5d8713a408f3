"""Config checks: the composed config against ``schema.json``, plugin namespaces, and one-line messages."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from runner.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schema.json")
# The runner instantiates ``_target_`` only from these packages, wherever in the config it appears.
ALLOWED_TARGET_PREFIXES = ("plugins.", "sklearn.")


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate(config: dict) -> None:
    """Raise :class:`ConfigError` with one line naming the first bad key, or return quietly."""
    validator = jsonschema.Draft202012Validator(schema())
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(describe(error))
    for path, target in _targets(config):
        if not target.startswith(ALLOWED_TARGET_PREFIXES):
            allowed = ", ".join(p + "*" for p in ALLOWED_TARGET_PREFIXES)
            raise ConfigError(f"config key '{path}' names '{target}', outside the allowed namespaces ({allowed})")


def describe(error: ValidationError) -> str:
    """One line: the dotted key path, what is wrong, what is allowed."""
    path = ".".join(str(p) for p in error.absolute_path)
    where = f"config key '{path}'" if path else "the config"
    kind, expected, got = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        extra = sorted(set(got) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        key = f"{path}.{extra[0]}" if path else extra[0]
        return f"unknown config key '{key}'; allowed keys here: {allowed}"
    if kind == "required":
        missing = [k for k in expected if k not in got]
        key = f"{path}.{missing[0]}" if path else missing[0]
        return f"config key '{key}' is missing"
    if kind == "type":
        kinds = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{where} must be of type {kinds} (got {got!r})"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{where} must be {op} {expected} (got {got!r})"
    if kind == "enum":
        return f"{where} must be one of {', '.join(map(str, expected))} (got {got!r})"
    if kind == "pattern":
        return f"{where} must match {expected} (got {got!r})"
    if kind == "minLength":
        return f"{where} must not be empty"
    return f"{where}: {error.message}"


def config_sha256(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two plain configs differ (for the message that refuses a changed config)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                keys.append(sub)
            else:
                keys.extend(differing_keys(old[key], new[key], sub))
        return keys
    return [] if old == new else [prefix or "<root>"]


def _targets(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_" and isinstance(value, str):
                yield sub, value
            else:
                yield from _targets(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{prefix}[{i}]")
