"""The composed config against its declarations: known keys, types and ranges (a JSON Schema generated from
``runner.settings``), then every ``_target_`` (``runner.targets``); each mistake one line naming the key.

A config is validated once per process: :func:`validate` remembers the digests of the configs it passed, so the
check the command line makes before Hydra starts and the one assembly makes inside the job are the same one.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from runner.errors import ConfigError, did_you_mean
from runner.settings import LATER_SECTIONS, SECTIONS, Plugin, RunSettings, field_types
from runner.targets import check_arguments, check_targets, user_packages

# Sections that must be present (a config recorded before a later section existed lacks it).
REQUIRED_SECTIONS = tuple(name for name in SECTIONS if name not in LATER_SECTIONS)
PLUGIN_SCHEMA = {"type": "object", "required": ["_target_"], "properties": {"_target_": {"type": "string",
                                                                                      "minLength": 1}}}
_validated: set[str] = set()


def validate(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` with one line naming the first bad key, or return quietly.

    Checks the keys, the schema, then every ``_target_`` (allowed object, known argument names) and scikit-learn's
    own validation of estimator arguments, so that a bad estimator argument is refused before the run starts.
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    from runner.rundir import config_sha256

    digest = config_sha256(config)
    if digest in _validated:
        return
    check_keys(config)
    error = best_match(jsonschema.Draft202012Validator(schema()).iter_errors(config))
    if error is not None:
        raise ConfigError(describe(error))
    packages = user_packages(config)
    check_targets(config, packages)
    check_arguments(config, packages)
    _validated.add(digest)


# --- the schema, from the declarations ---------------------------------------------------------------------------
@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of a composed config (Hydra's own section left to Hydra)."""
    top = section_schema(RunSettings)
    for name, cls in SECTIONS.items():
        top["properties"][name] = PLUGIN_SCHEMA if cls is Plugin else section_schema(cls)
    top["required"] = [*top["required"], *REQUIRED_SECTIONS]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top}


def section_schema(cls: type) -> dict[str, Any]:
    properties, required = {}, []
    declared = field_types(cls)
    for item in dataclasses.fields(cls):
        annotation = declared[item.name]
        if dataclasses.is_dataclass(annotation):
            properties[item.name] = section_schema(annotation)  # type: ignore[arg-type]
        else:
            nullable = item.metadata.get("nullable", False) or not item.metadata.get("optional", False)
            properties[item.name] = {**type_schema(annotation, nullable), **item.metadata.get("schema", {})}
        if not item.metadata.get("optional", False):
            required.append(item.name)
    return {"type": "object", "required": required, "properties": properties}


def type_schema(annotation: Any, nullable: bool = True) -> dict[str, Any]:
    """JSON Schema for a declared type; ``X | None`` admits null only where ``nullable``."""
    if annotation is Plugin:
        return dict(PLUGIN_SCHEMA)
    if isinstance(annotation, types.UnionType):
        members = [a for a in annotation.__args__ if a is not type(None)]
        allows_null = nullable and len(members) < len(annotation.__args__)
        parts = [type_schema(a) for a in members]
        names = [p["type"] for p in parts if set(p) == {"type"}]
        if len(names) == len(parts):
            kinds = [*names, *(["null"] if allows_null else [])]
            return {"type": kinds[0] if len(kinds) == 1 else kinds}
        if len(parts) == 1 and allows_null:
            return {"oneOf": [{"type": "null"}, parts[0]]}
        return parts[0] if len(parts) == 1 else {"anyOf": parts}
    origin = typing.get_origin(annotation)
    if origin is list:
        return {"type": "array", "items": type_schema(typing.get_args(annotation)[0])}
    if origin is dict:
        value = typing.get_args(annotation)[1]
        return {"type": "object"} if value is Any else {"type": "object", "additionalProperties": type_schema(value)}
    return {int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"}, str: {"type": "string"},
            Any: {}}[annotation]


# --- keys ----------------------------------------------------------------------------------------------------
def allowed_keys() -> dict[str, tuple[str, ...]]:
    """The declared keys: at the top (``""``) and in each section that is not a plugin node."""
    found = {"": tuple(sorted([*(f.name for f in dataclasses.fields(RunSettings)), *SECTIONS, "hydra"]))}
    for name, cls in SECTIONS.items():
        if dataclasses.is_dataclass(cls):
            found[name] = tuple(sorted(f.name for f in dataclasses.fields(cls)))
    return found


def check_keys(config: Mapping[str, Any]) -> None:
    """Refuse a key no declaration names (one added with ``+`` by mistake). The arguments of a ``_target_`` node
    are its plugin's to accept (see ``runner.targets.check_arguments``)."""
    known = allowed_keys()
    sections = [("", config)] + [(name, config[name]) for name in known if name and isinstance(config.get(name), dict)]
    for where, node in sections:
        if where and "_target_" in node:
            continue
        extra = sorted(set(node) - set(known[where]))
        if extra:
            key = f"{where}.{extra[0]}" if where else str(extra[0])
            raise ConfigError(
                f"unknown config key '{key}'; allowed keys here: {', '.join(known[where])}"
                f"{did_you_mean(str(extra[0]), known[where])}"
            )


def describe(error: Any) -> str:
    """One line for a schema error (``jsonschema.ValidationError``): the dotted key, what is wrong, what is
    allowed."""
    path = ".".join(str(p) for p in error.absolute_path)
    where = f"config key '{path}'" if path else "the config"
    kind, expected, got = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties" and isinstance(expected, bool):
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
