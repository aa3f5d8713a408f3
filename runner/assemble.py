"""From the composed config to the parts of a run, with every check that config and data allow done first.

Nothing here writes: a config refused here leaves the run directory as it was, so the corrected command works in
the same directory. Everything a stage later needs from the config is read here, once, into :class:`Parts`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.acquisition.protocol import declared_inputs
from plugins.embedders.pixels import PixelPCA
from plugins.errors import InputError
from plugins.protocols import CandidateScreen, ModelEmbedder, SamplesPredictions
from plugins.selection.initial import class_balanced_sample, split_items
from plugins.selection.policies import POLICY_INPUTS
from plugins.sources.dataset import Dataset
from runner.acquire import Acquisition
from runner.embedding_cache import EmbeddingCache, embedder_identity
from runner.errors import ConfigError, PluginError, from_plugin
from runner.files_labeller import FilesLabeller, read_answers
from runner.instantiate import instantiate_callable, instantiate_node
from runner.labellers import ACT_INPUTS, Annotators, Labeller, SimulatedAnnotators, initial_labels
from runner.platform_labeller import Planner, Platform, PlatformLabeller, check_project_dir, project_identity
from runner.quality import Embeddings, Metric, metric_set
from runner.rundir import ConfigRecord
from runner.seeds import stage_rng
from runner.settings import (
    RUNNER_ARGUMENTS,
    ComputeSettings,
    LoopSettings,
    ReportSettings,
    SelectionSettings,
    section,
)
from runner.stages import StartPlan
from runner.store import GLOBAL_ROUND
from runner.validation import validate

# What identifies a file loop's project beside its name and seed: the source's data (``project.source.path``).
FILES_IDENTITY = ("path",)


@dataclass(frozen=True)
class Policy:
    name: str
    function: Callable[..., np.ndarray]
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Audit:
    """Label-error detection: the judging function and how its out-of-fold probabilities are made."""

    label: str
    function: Callable[..., Any]
    folds: int
    min_labels: int


@dataclass(kw_only=True)
class Parts:
    """Everything one run is made of, built and checked before the run directory is touched. Nothing after
    assembly reads the config dict: what the stages need of it is here, typed."""

    seed: int
    project_name: str
    loop: LoopSettings
    selection: SelectionSettings
    report: ReportSettings
    data: Dataset
    model_node: dict[str, Any]  # the plugin's node: the runner's own keys (model.input) taken out
    model_input: str  # "pixels" or "embeddings" (settings.MODEL_INPUTS)
    acquisition: Acquisition
    embeddings: Embeddings
    metrics: list[Metric]
    filters: CandidateScreen
    policy: Policy
    labeller: Labeller
    audit: Audit | None  # None: no label-error detection
    compute: ComputeSettings

    @property
    def model_label(self) -> str:
        """How messages name the model plugin."""
        return str(self.model_node["_target_"])

    def new_model(self, random_state: int) -> Any:
        return instantiate_node(
            self.model_node, f"model '{self.model_label}'", n_classes=self.data.n_classes, random_state=random_state
        )

# The shipped strategies that choose without a model (from the pool or its embeddings), named when a cold start is
# refused so the person knows what to switch to.
COLD_START = ("random", "typiclust", "probcover", "image_diversity")
COLD_START_TEXT = ", ".join(COLD_START[:-1]) + " or " + COLD_START[-1]


def assemble(config: dict[str, Any], run_dir: Path | None = None) -> Parts:
    """Build and cross-check every part of the run ``config`` describes; ConfigError on the first problem.
    ``run_dir``: the run directory it will run in, whose store is only read here."""
    validate(config)
    try:
        return _assemble(config, run_dir)
    except InputError as exc:  # a plugin's own refusal of a value or of the data
        raise from_plugin(exc) from None


def _assemble(config: dict[str, Any], run_dir: Path | None) -> Parts:
    seed = int(config["seed"])
    loop = section(LoopSettings, config["loop"])
    selection = section(SelectionSettings, config["selection"])
    acquisition = Acquisition.from_config(config["acquisition"])
    metrics = metric_set(config["metrics"])
    metric_names = [m.name for m in metrics]
    filters = instantiate_node(config["filters"], "filters")
    embedder = instantiate_node(config["embedder"], "embedder")
    model_node = {k: v for k, v in config["model"].items() if k not in RUNNER_ARGUMENTS["model"]}
    model_input = str(config["model"].get("input") or "pixels")
    _check_model_input(model_input, embedder, config["embedder"])
    needs_embeddings = (
        model_input == "embeddings" or acquisition.needs_embeddings or filters.needs_embeddings
        or any(m.source == "embeddings" for m in metrics)
    )
    policy = _policy(config["selection"])
    compute = section(ComputeSettings, config.get("compute"))
    act = config["act"]
    files = _check_act(loop, act)
    annotators = None if not loop.simulated else _annotators(act)
    audit = _audit(config["audit"])
    _check_selection(selection, loop, acquisition, policy, metric_names)
    _check_relabel(selection, audit)

    data, platform, identity = _source(config, loop, run_dir, files)
    _check_against_data(data, selection, filters, metric_names)
    _check_kind(data, str(config["project"]["name"]), metrics, embedder, config["embedder"])
    project_name = str(config["project"]["name"])
    record = ConfigRecord.of(config)
    labeller: Labeller
    if files:
        labeller = _files_labeller(config, data, identity, record, run_dir)
    elif annotators is not None:
        start = _start_plan(config, data, loop, selection, seed, annotators)
        # A schedule may start with a strategy that needs no model: what round 0 needs is what counts.
        if loop.initial_labels == 0 and _round_zero(acquisition).needs_model:
            raise ConfigError(
                f"{acquisition.label} needs a trained model; loop.initial_labels=0 leaves round 0 without one "
                f"(set loop.initial_labels > 0, or start cold with acquisition={COLD_START_TEXT})"
            )
        if filters.needs_model and loop.initial_labels == 0:
            raise ConfigError("filters.classes filters by predicted class, which needs loop.initial_labels > 0")
        labeller = SimulatedAnnotators(annotators=annotators, start=start, record=record,
                                       fingerprint=data_fingerprint(data), project_name=project_name,
                                       n_classes=data.n_classes, seed=seed)
    else:
        assert platform is not None, "a human-mode source is a platform (checked in _source)"
        platform_labeller = PlatformLabeller(platform=platform, planner=_planner(act), identity=identity,
                                             record=record, project_name=project_name)
        platform_labeller.check_act()  # the act settings against the platform's workflow (stages, pathways)
        labeller = platform_labeller

    parts = Parts(
        seed=seed, project_name=project_name, loop=loop, selection=selection,
        report=section(ReportSettings, config.get("report")), data=data, model_node=model_node,
        model_input=model_input, acquisition=acquisition,
        embeddings=Embeddings(embedder, needs_embeddings, _embedding_cache(compute, config["embedder"])),
        metrics=metrics, filters=filters, policy=policy, labeller=labeller, audit=audit, compute=compute,
    )
    model = parts.new_model(random_state=0)  # a bad model config fails here, before any stage runs
    if "samples" in acquisition.inputs and not isinstance(model, SamplesPredictions):
        raise ConfigError(
            f"{acquisition.label} needs MC samples but model '{parts.model_label}' has no predict_proba_samples; "
            "use model=cnn"
        )
    return parts


def _check_act(loop: LoopSettings, act: dict[str, Any]) -> bool:
    """Whether the act is the file loop's (``act=files``: it has ``act.labels``), which is human mode's, as a
    platform's act is; simulation's act names a function."""
    files = "labels" in act
    if loop.simulated and files:
        raise ConfigError(f"act={act['name']} is the file-based human loop: add loop.mode=human (one invocation per "
                          "round), or pick a simulated act (act=oracle)")
    if loop.simulated and act.get("function") is None:
        raise ConfigError(f"act={act['name']} has no act.function; simulation needs one (act=oracle)")
    if not loop.simulated and not files and not {"apply", "show"} <= set(act):
        raise ConfigError(f"loop.mode=human needs act=files (answers from a labels file) or a platform's act (one "
                          f"with act.apply and act.show), not act={act['name']}")
    return files


def _files_labeller(config: dict[str, Any], data: Dataset, identity: str, record: ConfigRecord,
                    run_dir: Path | None) -> FilesLabeller:
    """The file loop's labeller, with the answers of its labels file read (and refused) now, before any write."""
    given, source = config["act"].get("labels"), config["project"]["source"]
    path = Path(str(given)).expanduser() if given else (run_dir or Path()) / "labels.csv"
    answers = read_answers(path, data, declared=source.get("classes") is not None)
    folder = Path(str(source["path"])).expanduser() if "path" in source else None
    if folder is None or data.kind != "images" or not folder.is_dir():
        folder = None
    return FilesLabeller(answers=answers, identity=identity, record=record, project_name=str(config["project"]["name"]),
                         folder=None if folder is None else folder.resolve(),
                         thumbnail_px=section(ReportSettings, config.get("report")).thumbnail_px)


def _check_kind(data: Dataset, project: str, metrics: list[Metric], embedder: Any, node: dict[str, Any]) -> None:
    """Items that are vectors (``Dataset.kind`` ``embeddings``) have no pixels: what needs images is refused."""
    if data.kind != "embeddings":
        return
    holds = f"project '{project}' holds vectors, not images"
    pictured = [m.name for m in metrics if m.source == "images"]
    if pictured:
        raise ConfigError(f"metrics.names: '{pictured[0]}' is computed from images and {holds}; keep only metrics "
                          "that take embeddings (uniqueness, near_duplicate)")
    static = embedder.fallback if isinstance(embedder, ModelEmbedder) else embedder
    if not isinstance(static, PixelPCA):
        raise ConfigError(f"embedder={node.get('_target_')} encodes images and {holds}; use embedder=pixels (the "
                          "principal components of the vectors)")


def _check_model_input(model_input: str, embedder: Any, node: dict[str, Any]) -> None:
    if model_input == "embeddings" and isinstance(embedder, ModelEmbedder):
        raise ConfigError(
            f"model.input=embeddings trains the model on the embedder's vectors, and embedder={node.get('_target_')} "
            "asks the model for them; pick an embedder computed without the model (embedder=pixels, "
            "self_supervised, clip)"
        )


def _embedding_cache(compute: ComputeSettings, node: dict[str, Any]) -> EmbeddingCache | None:
    if compute.embedding_cache is None:
        return None
    return EmbeddingCache(compute.embedding_cache, embedder_identity(node))


def _round_zero(acquisition: Acquisition) -> Acquisition:
    try:
        return acquisition.at(0, 0)
    except PluginError as exc:
        raise ConfigError(str(exc)) from None


def _policy(sel: dict[str, Any]) -> Policy:
    table = sel["policies"]
    name = str(sel["policy"])
    if name not in table:
        raise ConfigError(f"selection.policy={name} is not one of selection.policies ({', '.join(table)})")
    function = instantiate_callable(table[name], f"selection.policies.{name}")
    try:
        inputs = declared_inputs(function, known=POLICY_INPUTS)
    except ValueError as exc:
        raise ConfigError(f"selection.policies.{name}: {exc}") from None
    return Policy(name, function, inputs)


def _annotators(node: dict[str, Any]) -> Annotators:
    label = f"act '{node['name']}'"
    function = instantiate_callable(node["function"], label)
    try:
        inputs = declared_inputs(function, known=ACT_INPUTS)
    except ValueError as exc:
        raise ConfigError(f"act.function: {exc}") from None
    return Annotators(label, function, inputs)


def _planner(node: dict[str, Any]) -> Planner:
    label = f"act '{node['name']}'"
    function = instantiate_callable(node["function"], label)
    arguments = {k: v for k, v in node["function"].items() if k != "_target_"}
    return Planner(name=str(node["name"]), label=label, function=function, arguments=arguments,
                   apply=bool(node["apply"]), show=int(node["show"]))


def _audit(node: dict[str, Any]) -> Audit | None:
    if node["function"] is None:
        return None
    label = f"audit '{node['name']}'"
    missing = [k for k in ("folds", "min_labels") if k not in node]
    if missing:
        raise ConfigError(f"config key 'audit.{missing[0]}' is missing (audit={node['name']} names a function)")
    return Audit(label, instantiate_callable(node["function"], label), int(node["folds"]), int(node["min_labels"]))


def _check_relabel(selection: SelectionSettings, audit: Audit | None) -> None:
    share = selection.relabel_share
    if share == 0:
        return
    if audit is None:
        raise ConfigError(f"selection.relabel_share={share:g} sends label suspects back, and audit=none finds none; "
                          "set audit=cleanlab")
    if selection.cost is not None:
        raise ConfigError("selection.relabel_share counts items, so it cannot share a budget in selection.cost units")
    if selection.relabels == 0:
        raise ConfigError(
            f"selection.relabel_share={share:g} of selection.budget={selection.budget:g} is less than one item; "
            "raise one of them"
        )


def _check_selection(selection: SelectionSettings, loop: LoopSettings, acquisition: Acquisition, policy: Policy,
                     metric_names: list[str]) -> None:
    if acquisition.is_batch and "predicted" in policy.inputs:
        raise ConfigError(
            f"selection.policy={policy.name} cannot reorder the batch strategy '{acquisition.name}'; use topk, "
            "or an acquisition that scores every item (e.g. acquisition=margin)"
        )
    if selection.cost is not None:
        if acquisition.is_batch:
            raise ConfigError(f"selection.cost cannot budget the batch strategy '{acquisition.name}'; it picks "
                              "selection.budget items (a scoring acquisition such as acquisition=margin can)")
        if "cost" not in policy.inputs:
            raise ConfigError(
                f"selection.cost (a budget in cost units) needs a policy that takes a cost, such as topk "
                f"(selection.policy={policy.name} does not)"
            )
    elif float(selection.budget) != int(selection.budget):
        raise ConfigError(
            f"selection.budget={selection.budget:g} must be a whole number of items unless selection.cost is set"
        )
    if "predicted" in policy.inputs and loop.simulated and loop.initial_labels == 0:
        raise ConfigError(f"selection.policy={policy.name} needs predicted classes, so loop.initial_labels > 0")
    missing = [m for m in acquisition.metric_names if m not in metric_names]
    if missing:
        raise ConfigError(f"{acquisition.label} weighs metric '{missing[0]}'; add it to metrics.names")


def _source(config: dict[str, Any], loop: LoopSettings, run_dir: Path | None,
            files: bool) -> tuple[Dataset, Platform | None, str]:
    """The project's items, the platform they live on (human mode) and what identifies that project there (the
    file loop's: the source's path). A project directory (``run_dir``) of another project is refused before the
    source is read."""
    project = config["project"]
    identity = ""
    if files:
        identity = project_identity(str(project["name"]), project["source"], FILES_IDENTITY, int(config["seed"]))
        if run_dir is not None:
            check_project_dir(identity, run_dir)
    found = instantiate_node(project["source"], f"project '{project['name']}' source")
    if isinstance(found, Platform):
        if files:
            raise ConfigError(f"project '{project['name']}' is a labelling platform; act=files labels a data set "
                              "(project=folder, project=embeddings): use the platform's act")
        if loop.simulated:
            raise ConfigError(
                f"project '{project['name']}' is a labelling platform; its rounds run with loop.mode=human "
                "(one invocation per round)"
            )
        identity = project_identity(str(project["name"]), project["source"], found.identity_keys, int(config["seed"]))
        if run_dir is not None:
            check_project_dir(identity, run_dir)
        return found.read(), found, identity
    if not isinstance(found, Dataset):
        raise ConfigError(f"project '{project['name']}' source returned {type(found).__name__}, not a data set "
                          "or a platform")
    if files:
        return found, None, identity
    if not loop.simulated:
        raise ConfigError(
            f"project '{project['name']}' is not a platform project: loop.mode=human needs a source that returns a "
            "platform (name, read, stages, apply), or act=files"
        )
    return found, None, ""


def _check_against_data(data: Dataset, selection: SelectionSettings, filters: Any, metric_names: list[str]) -> None:
    unknown = [m for m in filters.metric_names if m not in metric_names]
    if unknown:
        raise ConfigError(f"filters.metrics.{unknown[0]}: metric '{unknown[0]}' is not computed; add it to "
                          "metrics.names")
    if "stage" in filters.item_columns and "stage" not in data.extra:
        raise ConfigError("filters.stages needs a source with workflow stages (a labelling platform's project)")
    filters.class_indices(data.class_names)
    if selection.cost is not None and selection.cost not in metric_names and selection.cost not in data.extra:
        raise ConfigError(
            f"selection.cost='{selection.cost}' is neither a computed metric nor a per-item value of the source"
        )


def _start_plan(config: dict[str, Any], data: Dataset, loop: LoopSettings, selection: SelectionSettings,
                seed: int, annotators: Annotators) -> StartPlan:
    """The split and the initial labels of a simulated run, drawn now so that a bad size is refused up front."""
    n = len(data.item_ids)
    labels = np.asarray(data.labels)
    rng = stage_rng(seed, GLOBAL_ROUND, "import")
    if data.split is not None:
        split = np.asarray(data.split).astype(str)
    else:
        test_size = config["project"].get("test_size")
        if test_size is None:
            raise ConfigError(f"project '{config['project']['name']}' has no split of its own; set project.test_size")
        if test_size >= n:
            raise ConfigError(f"project.test_size={test_size} leaves no pool ({n} items in all)")
        split = split_items(labels, test_size, rng)
    pool = np.flatnonzero(split == "pool")
    if selection.cost is None and selection.budget > len(pool):
        raise ConfigError(f"selection.budget={int(selection.budget)} is larger than the pool ({len(pool)} items)")
    if loop.initial_labels > len(pool):
        raise ConfigError(f"loop.initial_labels={loop.initial_labels} is larger than the pool ({len(pool)} items)")
    initial = class_balanced_sample(pool, labels[pool], loop.initial_labels, rng)
    given = initial_labels(annotators, labels[initial], seed, data.n_classes)
    return StartPlan(np.asarray(data.item_ids), split, labels, initial, given)


def data_fingerprint(data: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, data.item_ids)).encode())
    digest.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
    digest.update(str(data.images.shape).encode())
    return digest.hexdigest()
