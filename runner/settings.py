"""Every config key the runner reads, declared once: its type, its default and one line of help.

A section is a frozen dataclass; each field is a key. ``setting(default, help, **schema)`` declares a key with
its default, ``choice(help, **schema)`` a key whose value comes from the option file of a config group (a
project, an acquisition, an act), and ``schema`` holds what a type cannot say (ranges, allowed values) in JSON
Schema's words. From these declarations come:

- the config groups whose options are settings (``loop``, ``selection``, ``report``, ``compute``) and the
  top-level keys, registered in Hydra's ConfigStore (``runner.hydra_configs``), so their defaults live here;
- the JSON Schema the composed config is validated against (``runner.validation``);
- the typed settings every stage gets after assembly (:func:`section`): nobody reads the config dict after that;
- ``python -m runner --help``, which lists every key with its default and help.

Plugin nodes (``_target_`` and the plugin's arguments: ``model``, ``embedder``, ``filters``, ``project.source``,
``acquisition.function`` ...) are declared by the plugin's own signature, which the config check reads.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

S = TypeVar("S")


class Plugin(dict[str, Any]):
    """A config node naming a plugin: ``_target_`` and the plugin's arguments (checked against its signature)."""


def setting(default: Any, help: str, **schema: Any) -> Any:
    """A key with its default (used when the section comes from this declaration, and for records made before
    the key existed), its help line, and JSON Schema constraints beyond its type. A nested section's default is
    None here: its own declaration's defaults apply."""
    metadata = {"help": help, "schema": schema}
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    if isinstance(default, dict | list):
        return field(default_factory=lambda: _copy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def choice(help: str, optional: bool = False, nullable: bool = False, **schema: Any) -> Any:
    """A key whose value the group's option file gives. ``optional``: not every option has it (the typed settings
    then hold None); ``nullable``: null is a value it may take (a type ``X | None`` says so too, unless the key is
    optional, where None only stands for "absent")."""
    default = None if optional else dataclasses.MISSING
    return field(default=default,
                 metadata={"help": help, "schema": schema, "optional": optional, "nullable": nullable})


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- top level ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """The keys at the top of the config."""

    seed: int = setting(0, "every random choice of a run (split, initial labels, model init, random scores, pool "
                           "subsets) derives from it", minimum=0, maximum=4294967295)
    threads: int = setting(1, "CPU threads for numpy/BLAS and torch; part of the config because float sums depend "
                              "on it", minimum=1, maximum=256)
    allowed_packages: list[str] = setting([], "packages besides plugins/ and scikit-learn's estimators whose classes "
                                              "and functions a _target_ may name, e.g. [xgboost, lightgbm]",
                                          uniqueItems=True, items={
                                              "type": "string",
                                              "pattern": "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$"})


# --- sections whose defaults are declared here ----------------------------------------------------------------
@dataclass(frozen=True)
class LoopSettings:
    """``loop``: how many rounds, how they start, in which mode, and when they stop early."""

    rounds: int = setting(5, "acquisition rounds (the model is evaluated rounds + 1 times)", minimum=1)
    initial_labels: int = setting(20, "class-balanced, seeded labels before round 0 (0 = a cold start)", minimum=0)
    target_accuracy: float | None = setting(
        None, "stop once the test accuracy reaches it (null = never)", exclusiveMinimum=0, maximum=1)
    mode: str = setting("simulate", "simulate (the truth of each selection is revealed) or human (one round per "
                                    "invocation on a labelling platform)", enum=["simulate", "human"])
    stop_set: int = setting(0, "stabilizing predictions (Bloodgood and Vijay-Shanker 2009): this many unlabelled "
                               "items, drawn once, on which successive models are compared (0 = off)", minimum=0)
    stop_agreement: float = setting(0.99, "stop once Cohen's kappa between successive models on the stop set "
                                          "averages at least this over stop_window rounds",
                                    exclusiveMinimum=0, maximum=1)
    stop_window: int = setting(3, "rounds the stop-set agreement is averaged over", minimum=1)
    stop_when_stable: bool = setting(True, "false: record where the stabilizing-predictions rule would stop "
                                           "(summary.json: stable_at_labels) and go on")

    @property
    def simulated(self) -> bool:
        return self.mode == "simulate"


# What a model may be trained on: the images themselves, or the static embedder's vectors of them.
MODEL_INPUTS = ("pixels", "embeddings")
POLICIES = {
    "topk": {"_target_": "plugins.selection.policies.topk"},
    "class_balanced": {"_target_": "plugins.selection.policies.class_balanced"},
    "stratified": {"_target_": "plugins.selection.policies.stratified"},
}


@dataclass(frozen=True)
class SelectionSettings:
    """``selection``: how much is labelled per round and how scores become a batch."""

    budget: float = setting(10, "items labelled per round (in cost units when `cost` names a per-item column)",
                            exclusiveMinimum=0)
    policy: str = setting("topk", "which entry of `policies` turns scores into the batch: topk, class_balanced "
                                  "(an equal share per predicted class), stratified (shares as predicted)",
                          minLength=1)
    policies: dict[str, Plugin] = setting(POLICIES, "selection policies by name (add your own function here)")
    pool_subset: int | None = setting(None, "score only a seeded random subset of this many candidates "
                                            "(null = all)", minimum=1)
    chunk_size: int = setting(8192, "candidates scored, and predicted, at once (memory stays bounded on any pool)",
                              minimum=1)
    cost: str | None = setting(None, "a per-item column (a computed metric or a column of the source) to spend "
                                     "the budget in", minLength=1)
    tag: str | None = setting("to_label_next", "tag the selection in the run store (null = no tag)", minLength=1)
    relabel_share: float = setting(0.0, "part of the budget spent on another look at the labels the round's "
                                        "audit finds most likely wrong (needs audit=cleanlab)",
                                   minimum=0, exclusiveMaximum=1)

    @property
    def relabels(self) -> int:
        """Items of each round's budget that go to relabelling suspects (at most; fewer when fewer are found)."""
        return int(self.budget * self.relabel_share)


@dataclass(frozen=True)
class ReportSettings:
    """``report``: report.html, written into the run directory at the end of every run; the caps keep it small on
    any pool (its thumbnails are embedded in the page)."""

    write: bool = setting(True, "false skips the page (the other files of the run are written as always)")
    rounds_with_items: int = setting(30, "how many rounds (the latest) show their items as thumbnails", minimum=0)
    selected_per_round: int = setting(60, "thumbnails of each round's batch, best first", minimum=0)
    removed_per_filter: int = setting(12, "items each filter removed that a round records and the page shows, "
                                          "spread evenly over item order", minimum=0)
    label_issues_per_round: int = setting(24, "label suspects shown per round", minimum=0)
    thumbnail_px: int = setting(96, "longest side of a thumbnail; smaller images keep their own size",
                                minimum=8, maximum=512)


@dataclass(frozen=True)
class NeighbourIndexSettings:
    """``compute.neighbours``: the one neighbour index per embedding set (uniqueness, near-duplicates, TypiClust,
    ProbCover, ...): exact up to ``approximate_above`` rows, above that faiss's inverted-file index."""

    approximate_above: int | None = setting(20000, "rows searched exactly up to this many (null: always exact)",
                                            minimum=1)
    cells: int | None = setting(None, "k-means cells of the approximate index (null: 2 sqrt(n))", minimum=1)
    probes: int = setting(8, "cells searched per query", minimum=1)
    recall_sample: int = setting(500, "seeded queries on which recall@1 against exact search is measured when the "
                                      "index is built (logged, and written to summary.json)", minimum=0)


@dataclass(frozen=True)
class ComputeSettings:
    """``compute``: where the per-item stages (embed, metrics, score) run and how large pools are held."""

    backend: str = setting("local", "local (this process) or ray (Ray tasks, one per shard)", enum=["local", "ray"])
    shard_items: int = setting(65536, "items per shard of the per-item stages; results do not depend on it, "
                                      "memory does", minimum=1)
    memmap_min_bytes: int = setting(16777216, "a stored per-item array at least this large lives in its own file "
                                              "under arrays/ and is memory-mapped when read", minimum=0)
    neighbours: NeighbourIndexSettings = setting(NeighbourIndexSettings, "the shared neighbour index")
    address: str | None = choice("compute=ray: a running cluster (ray://HOST:10001 or HOST:6379); null starts "
                                 "Ray on this machine", optional=True, nullable=True, minLength=1)
    num_cpus: int | None = choice("compute=ray on this machine: cores Ray may use (null = all)", optional=True,
                                  nullable=True, minimum=1)
    embedding_cache: str | None = setting("outputs/cache/embeddings", "where embeddings that cost minutes (a trained "
                                          "or pretrained encoder's) are kept between runs, keyed by the images and "
                                          "the encoder; null = not kept", minLength=1)


# --- sections whose values come from a group's option files ---------------------------------------------------
@dataclass(frozen=True)
class ProjectSection:
    """``project``: the data source and its test split."""

    name: str = choice("the project's name (in reports and messages)", minLength=1)
    source: Plugin = choice("the source: returns a data set, or a labelling platform (loop.mode=human)")
    test_size: int | None = choice("items held out for testing when the source has no split of its own",
                                   optional=True, minimum=1)


@dataclass(frozen=True)
class AcquisitionSection:
    """``acquisition``: what to label first."""

    name: str = choice("the strategy's name (in reports and messages)", minLength=1)
    function: Plugin = choice("the acquisition function (plugins/acquisition/)")
    mc_samples: int | None = choice("stochastic passes per item for the strategies that score MC samples",
                                    optional=True, minimum=2, maximum=1000)


@dataclass(frozen=True)
class ActSection:
    """``act``: what happens to a selection: simulated annotators, a platform's action plan, or files (``act=files``:
    the batch written to ``to_label/``, the answers read from a labels file)."""

    name: str = choice("the act's name (in plans and messages)", minLength=1)
    function: Plugin | None = choice("simulation: truths in, labels out; platform: the planner of a round's actions; "
                                     "null for act=files, whose answers come from act.labels", nullable=True)
    apply: bool | None = choice("platform acts: apply the plan (false: a dry run that changes nothing)",
                                optional=True)
    show: int | None = choice("platform acts: records listed per action in the printed plan", optional=True,
                              minimum=0)
    labels: str | None = choice("act=files: the answers, a CSV file with item_id and label columns (the last answer "
                                "of an item wins); null = labels.csv in the project directory (hydra.run.dir)",
                                optional=True, nullable=True, minLength=1)


@dataclass(frozen=True)
class MetricsSection:
    """``metrics``: data-quality metrics, computed once per project into item_metrics.csv."""

    names: list[str] = choice("which metrics to compute, in this order", uniqueItems=True)
    functions: dict[str, Plugin] = choice("one function per name; its first parameter says what it is given: "
                                          "images or embeddings")
    scope: dict[str, str] = choice("unlabeled: a metric computed over the unlabelled pool only (else all items)",
                                   additionalProperties={"enum": ["all", "unlabeled"]})


@dataclass(frozen=True)
class AuditSection:
    """``audit``: label-error detection on the labelled items, each round, into label_issues.csv."""

    name: str = choice("the audit's name", minLength=1)
    function: Plugin | None = choice("the judge of out-of-fold probabilities (null: no audit)")
    folds: int | None = choice("folds of the out-of-fold probabilities", optional=True, minimum=2, maximum=50)
    min_labels: int | None = choice("rounds with fewer labelled items (in classes with two or more) record no "
                                    "issues", optional=True, minimum=2)


@dataclass(frozen=True)
class ModelSection:
    """``model``: a plugin node (``_target_`` and the model's arguments, checked by its signature), and what the
    runner gives it, which is not passed to the plugin."""

    _target_: str = choice("the model (plugins/models/, or any scikit-learn-style classifier)", minLength=1)
    input: str | None = choice("what the model is trained on: pixels (the images) or embeddings (the embedder's "
                               "vectors, computed once and cached)", optional=True, enum=list(MODEL_INPUTS))


# Keys of a plugin node that the runner reads and does not pass to the plugin.
RUNNER_ARGUMENTS: dict[str, tuple[str, ...]] = {"model": ("input",)}


@dataclass(frozen=True)
class FilterArguments:
    """``filters``: which unlabelled items may be selected. A plugin node: these are the shipped candidate filter's
    arguments, typed where they are given (another filter plugin takes its own, checked by its signature)."""

    _target_: str = choice("the candidate filter", minLength=1)
    metrics: dict[str, list[float | None]] | None = choice(
        "metric name -> [low, high], inclusive, null for an open side; items whose metric is NaN never pass",
        optional=True,
        additionalProperties={"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": ["number", "null"]}})
    tags: dict[str, list[str]] | None = choice("include: keep items with any of these tags (all when empty); exclude: "
                                               "drop items with any of these", optional=True, properties={
                                                   "include": {"type": "array", "items": {"type": "string"}},
                                                   "exclude": {"type": "array", "items": {"type": "string"}}})
    stages: list[str] | None = choice("workflow stages to keep (null: every stage)", optional=True, nullable=True)
    classes: list[str | int] | None = choice("predicted classes to keep, by name or index (null: all)",
                                             optional=True, nullable=True)
    exclude_near_duplicates: bool | None = choice("drop candidates within near_duplicate_threshold of a labelled "
                                                  "item or of an earlier kept candidate", optional=True)
    near_duplicate_threshold: float | None = choice("Euclidean distance between L2-normalised embeddings",
                                                    optional=True, minimum=0)


# What each section of the config is: settings declared with their defaults, or a group's choice.
SECTIONS: dict[str, type] = {
    "project": ProjectSection,
    "model": ModelSection,
    "acquisition": AcquisitionSection,
    "selection": SelectionSettings,
    "loop": LoopSettings,
    "act": ActSection,
    "embedder": Plugin,
    "metrics": MetricsSection,
    "filters": FilterArguments,
    "audit": AuditSection,
    "report": ReportSettings,
    "compute": ComputeSettings,
}
# Sections a config recorded before they existed may lack: their declared defaults stand in.
LATER_SECTIONS = ("report", "compute")


def section(cls: type[S], found: Mapping[str, Any] | None) -> S:
    """The typed settings of one config section, by key name; a key missing from ``found`` (a record made before
    it existed) takes its declared default."""
    values = {} if found is None else dict(found)
    types_ = field_types(cls)
    given: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types_:
            continue
        declared = types_[key]
        if isinstance(declared, type) and dataclasses.is_dataclass(declared):
            given[key] = section(declared, value)
            continue
        # YAML writes 10 for a float setting; the settings hold what the type says.
        wants_float = declared is float or (is_optional(declared) and float in declared.__args__)
        given[key] = float(value) if wants_float and isinstance(value, int) and not isinstance(value, bool) else value
    return cls(**given)


def field_types(cls: type) -> dict[str, Any]:
    """Each field's type, resolved from the annotations."""
    return typing.get_type_hints(cls, localns={"Plugin": Plugin})


def is_optional(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in annotation.__args__
