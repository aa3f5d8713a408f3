"""The config nodes the runner registers in Hydra's ConfigStore, built from the declarations in
``runner.settings``: the top-level keys (``run_settings``), the options of the settings groups (``loop/default``,
``selection/default``, ``report/default``, ``compute/local``, ``compute/ray``) and the page ``--help`` shows
(``hydra/help/runner``).

Hydra imports every module under the ``hydra_plugins`` namespace when it starts (the way its own launchers
register their configs); ``hydra_plugins/al_runner`` calls :func:`register`, so every composition of ``conf/``
finds these nodes: the command line, the Compose API in tests, a launcher's worker.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runner.settings import (
    SECTIONS,
    ComputeSettings,
    LoopSettings,
    ReportSettings,
    RunSettings,
    SelectionSettings,
    field_types,
)

PROVIDER = "al-runner"
ABOUT = (
    "python -m runner: active learning for labelling projects. It trains your model on the labels there are, "
    "scores every unlabelled item, picks the budget-sized batch that teaches the model most, has it labelled "
    "(by an oracle in simulation, by annotators on a labelling platform with loop.mode=human), and repeats. "
    "Every run leaves a directory that says what was done and can be replayed."
)

# Before the groups and keys, so that a first look at --help shows how the tool is called, not only what it has.
COMMON_COMMANDS = (
    "  python -m runner +experiment=digits                                # a seconds-long run to try things",
    "  python -m runner +experiment=mnist acquisition=margin seed=1       # swap any choice from the command line",
    "  python -m runner +experiment=digits hydra.run.dir=runs/try1        # a fixed run directory: re-running resumes",
    "  python -m runner -m +experiment=mnist acquisition=entropy,margin,random seed=0,1,2  # a sweep",
    "  python -m runner.report outputs/sweeps/DATE/TIME                   # the sweep's report",
)

def defaults(cls: type, *, leave_out: tuple[str, ...] = (), **changed: Any) -> dict[str, Any]:
    """The node a settings declaration gives: every declared default, in declaration order (which is the order
    of the keys in ``config.resolved.yaml``), optional keys left out."""
    node: dict[str, Any] = {}
    declared = cls()
    for item in dataclasses.fields(cls):
        if item.name in leave_out or item.metadata.get("optional"):
            continue
        value = getattr(declared, item.name)
        nested = dataclasses.is_dataclass(value) and not isinstance(value, type)
        node[item.name] = dataclasses.asdict(value) if nested else value
    for key, value in changed.items():
        node[key] = value
    return node


def nodes() -> dict[tuple[str | None, str], dict[str, Any]]:
    """``(group, option) -> node`` of every settings group's options and the top-level keys."""
    return {
        (None, "run_settings"): defaults(RunSettings),
        ("loop", "default"): defaults(LoopSettings),
        ("selection", "default"): defaults(SelectionSettings),
        ("report", "default"): defaults(ReportSettings),
        ("compute", "local"): defaults(ComputeSettings),
        ("compute", "ray"): defaults(ComputeSettings, backend="ray", address=None, num_cpus=None),
    }


def register() -> None:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for (group, name), node in nodes().items():
        store.store(group=group, name=name, node=node, provider=PROVIDER)
    store.store(group="hydra/help", name="runner", node=help_node(), provider=PROVIDER)


def help_text() -> str:
    """``python -m runner --help`` without overrides: the same page Hydra shows (``hydra.help``), with the config
    groups listed from ``conf/`` and the registered options. Hydra builds its page by copying its whole config
    repository once per group option, which takes longer than everything else the command does."""
    from runner.composition import CONFIG_PATH, RUNNER_DIR

    conf = (RUNNER_DIR / CONFIG_PATH).resolve()
    groups: dict[str, set[str]] = {}
    for folder in conf.iterdir():
        if folder.is_dir() and folder.name != "hydra":
            groups.setdefault(folder.name, set()).update(p.stem for p in folder.glob("*.yaml"))
    for group, name in nodes():
        if group is not None:
            groups.setdefault(group, set()).add(name)
    listed = "".join(f"{group}: {', '.join(sorted(options))}\n" for group, options in sorted(groups.items()))
    return str(help_node()["template"]).replace("\\${", "${").replace("$APP_CONFIG_GROUPS", listed)


# --- the help page ------------------------------------------------------------------------------------------------
def help_node() -> dict[str, Any]:
    """``hydra.help``: what the tool does, how to call it, the config groups, every key with its default and
    help."""
    template = "\n".join([
        ABOUT,
        "",
        "Usage: python -m runner +experiment=NAME [group=option ...] [key=value ...]",
        "",
        "The five commands used most:",
        *COMMON_COMMANDS,
        "The composed config, nothing run: python -m runner --cfg job [group=option ...] [key=value ...]",
        "",
        "== Config groups (group=option) ==",
        "$APP_CONFIG_GROUPS",
        "",
        "== Keys (key=default: what it does) ==",
        *key_lines(),
        "",
        "A plugin's node (model, embedder, project.source, acquisition.function, act.function, ...) takes the "
        "plugin's own arguments: see conf/GROUP/OPTION.yaml and the plugin's docstring.",
        "Hydra's own flags: --hydra-help.",
    ])
    return {"app_name": "python -m runner", "header": ABOUT, "footer": "", "template": _escape(template)}


def key_lines() -> list[str]:
    lines: list[str] = []
    for item in dataclasses.fields(RunSettings):
        lines.append(_line(item.name, item))
    for name, cls in SECTIONS.items():
        if not dataclasses.is_dataclass(cls):
            lines.append(f"  {name}: a plugin (_target_ and its arguments)")
            continue
        lines.extend(_section_lines(name, cls))
    return lines


def _section_lines(prefix: str, cls: type) -> list[str]:
    lines = []
    types = field_types(cls)
    for item in dataclasses.fields(cls):
        key = f"{prefix}.{item.name}"
        if dataclasses.is_dataclass(types[item.name]):
            lines.extend(_section_lines(key, types[item.name]))
        else:
            lines.append(_line(key, item))
    return lines


def _line(key: str, item: dataclasses.Field[Any]) -> str:
    help_text = str(item.metadata.get("help", ""))
    if item.default is not dataclasses.MISSING and not item.metadata.get("optional"):
        shown = _shown(item.default)
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
        shown = "{...}" if isinstance(value, dict) and value else _shown(value)
    else:
        shown = "(from the option)"
    return f"  {key}={shown}\n      {help_text}"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _escape(text: str) -> str:
    """The help is a config string: keep OmegaConf from reading ``${`` in it as an interpolation."""
    return text.replace("${", "\\${")
