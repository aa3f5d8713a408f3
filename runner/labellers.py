"""Labellers: how the items a round selects get their labels. The round driver's one port between modes.

The round (``runner.rounds``) is the same everywhere: train, audit, evaluate, stop?, score, select, label. What a
mode changes is its labeller:

- :class:`SimulatedAnnotators` (``loop.mode: simulate``): every item's truth is known; the ``act`` function (the
  oracle, or annotators who err) turns the truths of a selection into labels at once, and the rounds run on;
- :class:`runner.platform_labeller.PlatformLabeller` (``loop.mode: human``): a labelling platform holds the
  project; each invocation pulls its labels, runs one round, plans what the platform should do and applies it.
- :class:`runner.files_labeller.FilesLabeller` (``loop.mode: human``, ``act=files``): files hold the project's
  answers; each invocation reads them, runs one round and writes the round's batch to ``to_label/``.

A labeller says what identifies its run directory (:meth:`Labeller.claim`), how the store is brought up to date
before the rounds (:meth:`Labeller.start`), what it measures per round, how a selection is labelled, and what it
adds to the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from plugins.sources.dataset import Dataset
from runner import artifacts, stages
from runner.errors import ConfigError, PluginError
from runner.rundir import ConfigRecord, check_claim, claim
from runner.seeds import stage_rng
from runner.store import GLOBAL_ROUND, Store
from runner.views import RoundView


class Session(Protocol):
    """What a labeller works with: the round driver's session (``runner.session.Session``)."""

    @property
    def store(self) -> Store: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def data(self) -> Dataset: ...

    def stage(self, round_: int, name: str, work: Callable[[], stages.Writer]) -> None:
        """Run ``work`` as the stage ``name`` of ``round_`` unless it is recorded done."""
        ...

    def candidates(self) -> np.ndarray:
        """The unlabelled pool items, before filters."""
        ...

    def screened(self, round_: int) -> tuple[np.ndarray, list[Any]]:
        """The round's candidates that pass the filters, and what each filter removed."""
        ...

    def view(self, round_: int) -> RoundView:
        """What the round's model and store show of the round (predictions of any items)."""
        ...


class Labeller(Protocol):
    """How a run's selections get labels (see the module docstring)."""

    @property
    def knows_truth(self) -> bool:
        """Whether every item's truth is known, so that the audit's precision and recall can be measured."""
        ...

    @property
    def items_change(self) -> bool:
        """Whether items can join between invocations, so that embeddings and metrics are computed per round."""
        ...

    def check(self, run_dir: Path) -> None:
        """Refuse, reading only, a run directory that belongs to another run or project."""
        ...

    def claim(self, store: Store, run_dir: Path, data: Dataset) -> Dataset:
        """Record this run's identity in its store (checked by :meth:`check`), and return ``data`` with item i
        being the store's item i."""
        ...

    def start(self, session: Session) -> int:
        """Bring the store up to date before the rounds (import, or pull from the platform); the first round
        this invocation works on."""
        ...

    def round_figures(self, session: Session, round_: int) -> dict[str, Any]:
        """What the labeller measures of an evaluated round, beside accuracy (recorded in metrics.jsonl)."""
        ...

    def label(self, session: Session, round_: int) -> str | None:
        """Label the round's selection and relabels; None to go on with the next round, or why this invocation
        ends here (``dry_run``, ``applied``, ``partial``)."""
        ...

    def summary(self, session: Session, stopped: str) -> dict[str, Any]:
        """What the labeller adds to ``summary.json``."""
        ...

    def conclude(self, session: Session, summary: dict[str, Any]) -> None:
        """After the run directory's files are written: anything left to say (or to raise)."""
        ...


# What a simulated annotator (the act function of loop.mode=simulate) may ask for by parameter name.
ACT_INPUTS = {"truth": "the selected items' true classes", "rng": "the stage's seeded Generator",
              "n_classes": "number of classes"}


@dataclass(frozen=True)
class Annotators:
    """The act function of a simulation: the selected items' truths in, their labels out."""

    label: str
    function: Callable[..., Any]
    inputs: tuple[str, ...]  # of ACT_INPUTS

    def __call__(self, truth: np.ndarray, rng: np.random.Generator, n_classes: int) -> np.ndarray:
        given = {"truth": truth, "rng": rng, "n_classes": n_classes}
        labels = np.asarray(self.function(**{k: given[k] for k in self.inputs}), dtype=np.int64)
        if labels.shape != truth.shape:
            raise ValueError(f"returned {labels.shape} labels for {len(truth)} items")
        return labels


class SimulatedAnnotators:
    """Simulation: the truths are known, the annotators (``act``) label a selection the moment it is made."""

    knows_truth = True
    items_change = False

    def __init__(self, annotators: Annotators, start: stages.StartPlan, record: ConfigRecord, fingerprint: str,
                 project_name: str, n_classes: int, seed: int) -> None:
        self.annotators = annotators
        self.start_plan = start
        self.record = record
        self.fingerprint = fingerprint
        self.project_name = project_name
        self.n_classes = n_classes
        self.seed = seed

    def check(self, run_dir: Path) -> None:
        check_claim(run_dir, self.record, self.fingerprint, self.project_name)

    def claim(self, store: Store, run_dir: Path, data: Dataset) -> Dataset:
        claim(store, run_dir, self.record)
        artifacts.write_skipped_files(run_dir, data.skipped)
        return data

    def start(self, session: Session) -> int:
        plan = self.start_plan
        # The source's own tags land with the items, so that tag filters see them from round 0 on.
        tags = source_tags(session.data, np.arange(len(plan.item_ids)))

        def work() -> stages.Writer:
            imported = stages.import_items(plan, self.fingerprint, self.n_classes)

            def write(tx: Store) -> None:
                imported(tx)
                for tag, indices in tags.items():
                    tx.add_tags(indices, tag, GLOBAL_ROUND)

            return write

        session.stage(GLOBAL_ROUND, "import", work)
        return 0

    def round_figures(self, session: Session, round_: int) -> dict[str, Any]:
        return {}

    def label(self, session: Session, round_: int) -> str | None:
        session.stage(round_, "act", lambda: self.reveal(session.store, round_))
        return None

    def reveal(self, store: Store, round_: int) -> stages.Writer:
        """The annotators label the round's selection; the suspects sent back get a careful second look, which
        finds the truth."""
        selected, relabeled = store.selected_indices(round_), store.relabel_indices(round_)
        try:
            labels = self.annotators(store.truths(selected), stage_rng(self.seed, round_, "act"), self.n_classes)
        except ValueError as exc:
            raise PluginError(f"{self.annotators.label}: {exc}") from None
        return stages.reveal(round_, selected, labels, relabeled, store.truths(relabeled))

    def summary(self, session: Session, stopped: str) -> dict[str, Any]:
        return {}

    def conclude(self, session: Session, summary: dict[str, Any]) -> None:
        pass


def initial_labels(annotators: Annotators, truth: np.ndarray, seed: int, n_classes: int) -> np.ndarray:
    """The labels of a simulation's initial items: the same annotators as every later label (an erring oracle
    errs here too); a broken act function is refused before the run starts."""
    try:
        return annotators(truth, stage_rng(seed, GLOBAL_ROUND, "act"), n_classes)
    except ValueError as exc:
        raise ConfigError(f"{annotators.label}: {exc}") from None


def source_tags(data: Dataset, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The tags the source gives items ``indices`` (``extra["tags"]``: names per item, as a manifest's ``tags``
    column lists them), by tag name; item indices in ``indices``' order."""
    column = data.extra.get("tags")
    if column is None:
        return {}
    found: dict[str, list[int]] = {}
    for i in indices.tolist():
        names = column[i]
        for tag in ((names,) if names else ()) if isinstance(names, str) else (names or ()):
            found.setdefault(str(tag), []).append(int(i))
    return {tag: np.array(members, dtype=np.int64) for tag, members in sorted(found.items())}
