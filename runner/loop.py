"""Stage sequencing: ``import``, then ``train -> evaluate -> score -> select -> act`` per round.

Every stage computes, then writes its results and its own "done" record in one store transaction. A re-run of
the same run directory skips what is recorded done, so a killed run resumes where it stopped and ends with the
same store, and therefore the same files, as an uninterrupted run. Every random choice comes from a generator
seeded by ``(seed, round, stage)``, never from a shared stream, so skipping stages cannot shift later draws.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from plugins.files import atomic_write_text
from runner import artifacts, contracts, environment
from runner.acquire import Acquisition, InputProvider, batch_scores, score_candidates, select_batch
from runner.candidates import CandidateFilter
from runner.config import config_sha256, differing_keys, validate
from runner.errors import ConfigError, PluginError
from runner.plugins import instantiate_node as _instantiate
from runner.quality import Embeddings, compute_metrics
from runner.store import GLOBAL_ROUND, Store

log = logging.getLogger("runner")

STAGE_CODES = {"import": 0, "train": 1, "evaluate": 2, "score": 3, "select": 4, "act": 5, "embed": 6, "metrics": 7}


def stage_rng(seed: int, round_: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([seed, round_ + 1, STAGE_CODES[stage]])


def stage_seed(seed: int, round_: int, stage: str) -> int:
    """An integer seed for libraries that take one (scikit-learn, torch)."""
    return int(stage_rng(seed, round_, stage).integers(2**31 - 1))


@dataclass
class Run:
    config: dict
    run_dir: Path
    store: Store
    data: Any
    acquisition: Acquisition
    embeddings: Embeddings
    filters: CandidateFilter
    models: dict[int, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    # --- the sequence -----------------------------------------------------------------------------
    def execute(self) -> dict:
        self.stage(GLOBAL_ROUND, "import", self.do_import)
        if self.embeddings.needs_static:
            self.stage(GLOBAL_ROUND, "embed", self.do_embed)
        if self.config["metrics"].get("names"):
            self.stage(GLOBAL_ROUND, "metrics", self.do_metrics)
            artifacts.write_item_metrics(self.store, self.run_dir, self.config["metrics"]["names"])
        total_rounds = int(self.config["loop"]["rounds"])
        done_before = [r["round"] for r in self.store.rounds()]
        if done_before and not self.store.is_done(GLOBAL_ROUND, "finish"):
            log.info(f"resuming {self.run_dir} after round {max(done_before)}")
        stopped = "rounds"
        for round_ in range(total_rounds + 1):
            started = time.perf_counter()
            fresh = not self._round_closed(round_, total_rounds)
            self.stage(round_, "train", lambda r=round_: self.do_train(r))
            self.stage(round_, "evaluate", lambda r=round_: self.do_evaluate(r))
            stopped = self._stop_reason(round_, total_rounds)
            if stopped is None:
                self.stage(round_, "score", lambda r=round_: self.do_score(r))
                self.stage(round_, "select", lambda r=round_: self.do_select(r))
                artifacts.write_selection_csv(self.store, self.run_dir, round_)
                self.stage(round_, "act", lambda r=round_: self.do_act(r))
            rows = artifacts.write_metrics_jsonl(self.store, self.run_dir)
            if fresh:
                self._report_round(rows[-1], total_rounds, time.perf_counter() - started)
            if stopped is not None:
                break
        return self.finish(stopped)

    def stage(self, round_: int, name: str, work: Callable[[], Callable[[Store], None]]) -> None:
        """Run ``work`` unless recorded done; ``work`` computes and returns the writer for one transaction."""
        if self.store.is_done(round_, name):
            return
        started = time.perf_counter()
        write = work()
        with self.store.transaction() as tx:
            write(tx)
            tx.mark_done(round_, name, time.perf_counter() - started)

    # --- stages -----------------------------------------------------------------------------------
    def do_import(self) -> Callable[[Store], None]:
        data = self.data
        n = len(data.item_ids)
        rng = stage_rng(self.seed, GLOBAL_ROUND, "import")
        split = split_items(data, self.config["project"].get("test_size"), rng)
        pool = np.flatnonzero(split == "pool")
        initial = class_balanced_sample(pool, data.labels[pool], self.config["loop"]["initial_labels"], rng)

        def write(tx: Store) -> None:
            truths = [None if y < 0 else int(y) for y in data.labels]
            tx.add_items([str(i) for i in data.item_ids], list(split), truths)
            tx.add_labels(initial, data.labels[initial], GLOBAL_ROUND)
            tx.set_meta("data_fingerprint", data_fingerprint(data))
            tx.set_meta("n_classes", str(data.n_classes))

        log.info(f"imported {n} items: {len(pool)} pool, {n - len(pool)} test, {len(initial)} initial labels")
        return write

    def do_train(self, round_: int) -> Callable[[Store], None]:
        indices, labels = self.store.labeled()
        if len(indices) == 0:
            return lambda tx: None
        model = self.new_model(stage_seed(self.seed, round_, "train"))
        try:
            model.fit(self.data.images[indices], labels)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise PluginError(f"{self.config['model']['_target_']}: fit failed: {exc}") from None
        self.models = {round_: model}
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        return lambda tx: tx.put_blob(f"model/{round_:03d}", blob)

    def do_evaluate(self, round_: int) -> Callable[[Store], None]:
        indices, _ = self.store.labeled()
        test = self.store.split_indices("test")
        model = self.model(round_)
        accuracy = None
        if model is not None and len(test):
            probs = self.predict_probs(model, test)
            accuracy = float((probs.argmax(axis=1) == self.data.labels[test]).mean())
        return lambda tx: tx.record_round(round_, len(indices), accuracy, {})

    def do_embed(self) -> Callable[[Store], None]:
        vectors = self.embeddings.fit_static(self.data.images)
        return lambda tx: tx.put_array("embeddings/static", vectors)

    def do_metrics(self) -> Callable[[Store], None]:
        labeled, _ = self.store.labeled()
        unlabeled = np.setdiff1d(self.store.split_indices("pool"), labeled)
        columns = compute_metrics(
            self.config["metrics"], self.data, self.embeddings.static(), unlabeled,
            stage_rng(self.seed, GLOBAL_ROUND, "metrics"),
        )

        def write(tx: Store) -> None:
            for name, values in columns.items():
                tx.put_array(f"metrics/{name}", values)

        return write

    def do_score(self, round_: int) -> Callable[[Store], None]:
        rng = stage_rng(self.seed, round_, "score")
        model = self.model(round_)
        candidates = self.filters.apply(self.candidates(), model, self)
        subset = self.config["selection"].get("pool_subset")
        if subset and len(candidates) > subset:
            candidates = np.sort(rng.choice(candidates, size=subset, replace=False))
        provider = self.input_provider(model, candidates, rng, round_)
        budget = int(self.config["selection"]["budget"])
        acquisition = self.acquisition
        if acquisition.is_batch:
            scores = batch_scores(select_batch(acquisition.main, provider, budget), len(candidates))
        elif acquisition.components:
            columns, weights = {}, {}
            for component in acquisition.components:
                if component.score is not None:
                    columns[component.name] = score_candidates(component.score, provider, len(candidates) or 1)
                else:
                    columns[component.name] = neutral_fill(self.metric_column(component.metric)[candidates])
                weights[component.name] = component.weight
            try:
                combined = acquisition.main.function(columns=columns, weights=weights)
            except ValueError as exc:
                raise PluginError(f"{acquisition.main.label}: {exc}") from None
            scores = contracts.check_scores(combined, len(candidates), acquisition.main.label)
        else:
            chunk = int(self.config["selection"].get("chunk_size") or 8192)
            scores = score_candidates(acquisition.main, provider, chunk)
        extra = {}
        if self.config["selection"]["policy"] != "topk":
            extra["predicted"] = provider.get("probs").argmax(axis=1) if len(candidates) else np.zeros(0, int)

        def write(tx: Store) -> None:
            tx.put_array(f"candidates/{round_:03d}", candidates)
            tx.put_array(f"scores/{round_:03d}", scores)
            for name, values in extra.items():
                tx.put_array(f"{name}/{round_:03d}", values)

        return write

    def do_select(self, round_: int) -> Callable[[Store], None]:
        from plugins.selection import policies

        selection = self.config["selection"]
        candidates = self.store.get_array(f"candidates/{round_:03d}")
        scores = self.store.get_array(f"scores/{round_:03d}")
        budget = selection["budget"]
        if self.acquisition.is_batch:
            chosen = policies.topk(scores, int((scores > 0).sum()))
        elif selection.get("cost"):
            cost = self.item_values(selection["cost"], "selection.cost")[candidates]
            chosen = policies.topk_cost(scores, float(budget), cost)
        elif selection["policy"] == "topk":
            chosen = policies.topk(scores, int(budget))
        else:
            predicted = self.store.get_array(f"predicted/{round_:03d}")
            policy = getattr(policies, selection["policy"])
            chosen = policy(scores, int(budget), predicted)
        tag = selection.get("tag")

        def write(tx: Store) -> None:
            tx.record_selection(round_, candidates[chosen], scores[chosen])
            if tag:
                tx.add_tags(candidates[chosen], tag, round_)

        return write

    def do_act(self, round_: int) -> Callable[[Store], None]:
        selected = self.store.selected_indices(round_)
        action = _instantiate(self.config["act"]["function"], f"act '{self.config['act']['name']}'", _partial_=True)
        try:
            labels = np.asarray(action(truth=self.store.truths(selected)), dtype=np.int64)
        except ValueError as exc:
            raise PluginError(f"act '{self.config['act']['name']}': {exc}") from None
        if labels.shape != selected.shape:
            raise PluginError(
                f"act '{self.config['act']['name']}': returned {labels.shape} labels for {len(selected)} items"
            )

        def write(tx: Store) -> None:
            tx.add_labels(selected, labels, round_)
            for prefix in ("model/", "scores/", "candidates/", "predicted/"):
                tx.delete_blobs(f"{prefix}{round_:03d}")

        return write

    # --- helpers ----------------------------------------------------------------------------------
    def new_model(self, random_state: int) -> Any:
        return _instantiate(
            self.config["model"], f"model '{self.config['model']['_target_']}'",
            n_classes=self.data.n_classes, random_state=random_state,
        )

    def model(self, round_: int) -> Any | None:
        if round_ not in self.models:
            blob = self.store.get_blob(f"model/{round_:03d}")
            self.models = {} if blob is None else {round_: pickle.loads(blob)}
        return self.models.get(round_)

    def candidates(self) -> np.ndarray:
        labeled, _ = self.store.labeled()
        return np.setdiff1d(self.store.split_indices("pool"), labeled, assume_unique=True)

    def predict_probs(self, model: Any, indices: np.ndarray) -> np.ndarray:
        probs = model.predict_proba(self.data.images[indices])
        return contracts.check_probs(probs, len(indices), self.data.n_classes, self.config["model"]["_target_"])

    def input_provider(self, model: Any, candidates: np.ndarray, rng: np.random.Generator,
                       round_: int) -> InputProvider:
        plugin = self.config["model"]["_target_"]
        labeled, _ = self.store.labeled()

        def samples(part: np.ndarray) -> np.ndarray:
            if not hasattr(model, "predict_proba_samples"):
                raise ConfigError(
                    f"acquisition '{self.acquisition.name}' needs MC samples but model '{plugin}' has no "
                    "predict_proba_samples; use model=cnn"
                )
            t = int(self.acquisition.mc_samples)
            drawn = model.predict_proba_samples(self.data.images[part], t)
            return contracts.check_samples(drawn, t, len(part), self.data.n_classes, plugin)

        getters = {
            "probs": lambda part: self.predict_probs(model, part),
            "samples": samples,
            "embeddings": lambda part: self.embeddings.of(part, model),
            "labeled_embeddings": lambda _: self.embeddings.of(labeled, model),
        }
        constants = {"rng": rng, "n_classes": self.data.n_classes}
        return InputProvider(candidates, getters, constants)

    def metric_column(self, name: str) -> np.ndarray:
        values = self.store.get_array(f"metrics/{name}")
        if values is None:
            raise ConfigError(f"metric '{name}' is not computed in this run; add it to metrics.names")
        return values

    def item_values(self, key: str, config_key: str) -> np.ndarray:
        """A per-item column: a computed metric, or a per-item array the source provides in ``extra``."""
        if self.store.get_array(f"metrics/{key}") is not None:
            return self.metric_column(key)
        if key in self.data.extra:
            return np.asarray(self.data.extra[key], dtype=np.float64)
        raise ConfigError(f"{config_key}='{key}' is neither a computed metric nor a per-item value of the source")

    def _stop_reason(self, round_: int, total_rounds: int) -> str | None:
        target = self.config["loop"].get("target_accuracy")
        accuracy = next(r["test_accuracy"] for r in self.store.rounds() if r["round"] == round_)
        if target is not None and accuracy is not None and accuracy >= target:
            return "target_accuracy"
        if round_ >= total_rounds:
            return "rounds"
        if len(self.candidates()) == 0 and not self.store.is_done(round_, "act"):
            return "pool_exhausted"
        return None

    def _round_closed(self, round_: int, total_rounds: int) -> bool:
        return self.store.is_done(round_, "act") or (
            self.store.is_done(round_, "evaluate") and self._stop_reason(round_, total_rounds) is not None
        )

    def _report_round(self, row: dict, total_rounds: int, seconds: float) -> None:
        accuracy = "n/a   " if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        log.info(
            f"round {row['round']:>3}/{total_rounds} | labelled {row['n_labeled']:>6} | "
            f"test accuracy {accuracy} | {seconds:6.2f} s"
        )

    def finish(self, stopped: str) -> dict:
        rows = artifacts.write_metrics_jsonl(self.store, self.run_dir)
        if self.config["metrics"].get("names"):
            artifacts.write_item_metrics(self.store, self.run_dir, self.config["metrics"]["names"])
        title = f"{self.config['project']['name']} · {self.config['acquisition']['name']} · seed {self.seed}"
        artifacts.write_learning_curve(rows, self.run_dir / "learning_curve.png", title)
        summary = summarize(rows, self.config, stopped)
        summary["config_sha256"] = self.store.get_meta("config_sha256")
        summary["runner_version"] = self.store.get_meta("runner_version")
        summary["tags"] = artifacts.write_tags_csv(self.store, self.run_dir)
        summary["environment"] = environment.describe()
        artifacts.write_json(self.run_dir / "summary.json", summary)
        if not self.store.is_done(GLOBAL_ROUND, "finish"):
            with self.store.transaction() as tx:
                tx.mark_done(GLOBAL_ROUND, "finish", 0.0)
        return summary


def neutral_fill(values: np.ndarray) -> np.ndarray:
    """A metric column with items it could not score set to the median, so they neither win nor lose by it."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    filled = values.copy()
    filled[missing] = np.nanmedian(values) if (~missing).any() else 0.0
    return filled


def summarize(rows: list[dict], config: dict, stopped: str) -> dict:
    evaluated = [r for r in rows if r["test_accuracy"] is not None]
    target = config["loop"].get("target_accuracy")
    reached = [r["n_labeled"] for r in evaluated if target is not None and r["test_accuracy"] >= target]
    seconds = sum(sum(r["seconds"].values()) for r in rows)
    return {
        "project": config["project"]["name"],
        "acquisition": config["acquisition"]["name"],
        "model": config["model"]["_target_"],
        "seed": config["seed"],
        "rounds_evaluated": len(rows),
        "n_labeled": rows[-1]["n_labeled"] if rows else 0,
        "final_test_accuracy": evaluated[-1]["test_accuracy"] if evaluated else None,
        "best_test_accuracy": max(r["test_accuracy"] for r in evaluated) if evaluated else None,
        "target_accuracy": target,
        "labels_to_target": reached[0] if reached else None,
        "stopped": stopped,
        "stage_seconds_total": round(seconds, 3),
    }


def split_items(data: Any, test_size: int | None, rng: np.random.Generator) -> np.ndarray:
    """``"pool"``/``"test"`` per item: the source's own split, else a seeded split stratified by label."""
    if data.split is not None:
        return np.asarray(data.split).astype(str)
    from sklearn.model_selection import train_test_split

    n = len(data.item_ids)
    labels = np.asarray(data.labels)
    stratify = labels if (labels >= 0).all() else None
    _, test = train_test_split(
        np.arange(n), test_size=int(test_size), stratify=stratify, random_state=int(rng.integers(2**31 - 1))
    )
    split = np.full(n, "pool", dtype=object)
    split[test] = "test"
    return split.astype(str)


def class_balanced_sample(pool: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` pool indices spread evenly over the classes present (the remainder to random classes), sorted."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    classes = np.unique(labels[labels >= 0])
    quota = np.full(len(classes), k // len(classes))
    quota[rng.choice(len(classes), size=k % len(classes), replace=False)] += 1
    chosen = []
    for cls, count in zip(classes, quota, strict=True):
        members = pool[labels == cls]
        if count > len(members):
            raise ConfigError(
                f"loop.initial_labels={k} needs {count} items of class {cls}, but the pool has {len(members)}"
            )
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def data_fingerprint(data: Any) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, data.item_ids)).encode())
    digest.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
    digest.update(str(data.images.shape).encode())
    return digest.hexdigest()


def open_run(config: dict, run_dir: Path) -> Run:
    """Validate, open (or resume) the store of ``run_dir``, load the data and the acquisition function."""
    from runner import __version__

    validate(config)
    if config["loop"].get("mode") == "human":  # labelling-platform rounds: see runner/platform.py
        from runner.platform import open_platform_run

        return open_platform_run(config, run_dir)
    acquisition = Acquisition.from_config(config["acquisition"])
    data = _instantiate(config["project"]["source"], f"project '{config['project']['name']}' source")
    check_sizes(config, data)
    embeddings = Embeddings.from_config(config, acquisition)
    filters = CandidateFilter.from_config(config, data)
    check_selection(config, acquisition)
    if acquisition.needs_model and config["loop"]["initial_labels"] == 0:
        raise ConfigError(
            f"acquisition '{acquisition.name}' needs a trained model; loop.initial_labels=0 leaves round 0 without "
            "one (set loop.initial_labels > 0 or pick acquisition=random)"
        )

    run_dir.mkdir(parents=True, exist_ok=True)
    store = Store(run_dir / "state.sqlite")
    digest = config_sha256(config)
    recorded = store.get_meta("config_sha256")
    if recorded is None:
        with store.transaction() as tx:
            tx.set_meta("config_sha256", digest)
            tx.set_meta("config_json", _json(config))
            tx.set_meta("runner_version", __version__)
    elif recorded != digest:
        import json

        changed = differing_keys(json.loads(store.get_meta("config_json") or "{}"), config)
        store.close()
        raise ConfigError(
            f"{run_dir} holds a run with a different config (changed: {', '.join(changed[:5])}); "
            "use a new hydra.run.dir or the original config"
        )
    elif store.is_done(GLOBAL_ROUND, "import") and store.get_meta("data_fingerprint") != data_fingerprint(data):
        store.close()
        raise ConfigError(f"the data of project '{config['project']['name']}' changed since {run_dir} was started")
    atomic_write_text(run_dir / "config.resolved.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    embeddings.images = data.images
    embeddings.load = lambda: store.get_array("embeddings/static")
    run = Run(config, run_dir, store, data, acquisition, embeddings, filters)
    try:
        run.new_model(random_state=0)  # a bad model config fails here, before any stage runs
    except ConfigError:
        store.close()
        raise
    return run


def check_sizes(config: dict, data: Any) -> None:
    n = len(data.item_ids)
    if data.split is not None:
        pool_size = int((np.asarray(data.split) == "pool").sum())
    else:
        test_size = config["project"].get("test_size")
        if test_size is None:
            raise ConfigError(f"project '{config['project']['name']}' has no split of its own; set project.test_size")
        if test_size >= n:
            raise ConfigError(f"project.test_size={test_size} leaves no pool ({n} items in all)")
        pool_size = n - test_size
    budget = config["selection"]["budget"]
    if not config["selection"].get("cost") and budget > pool_size:
        raise ConfigError(f"selection.budget={budget} is larger than the pool ({pool_size} items)")
    initial = config["loop"]["initial_labels"]
    if initial > pool_size:
        raise ConfigError(f"loop.initial_labels={initial} is larger than the pool ({pool_size} items)")


def check_selection(config: dict, acquisition: Acquisition) -> None:
    selection = config["selection"]
    if acquisition.is_batch and selection["policy"] != "topk":
        raise ConfigError(
            f"selection.policy={selection['policy']} cannot reorder the batch strategy '{acquisition.name}'; use topk"
        )
    if selection.get("cost") and selection["policy"] != "topk":
        raise ConfigError("selection.cost (a budget in cost units) works with selection.policy=topk only")
    if not selection.get("cost") and float(selection["budget"]) != int(selection["budget"]):
        raise ConfigError(
            f"selection.budget={selection['budget']} must be a whole number of items unless selection.cost is set"
        )
    simulated = config["loop"].get("mode", "simulate") == "simulate"  # platform projects bring their own labels
    if selection["policy"] != "topk" and simulated and config["loop"]["initial_labels"] == 0:
        raise ConfigError(f"selection.policy={selection['policy']} needs predicted classes, so loop.initial_labels > 0")
    missing = [m for m in acquisition.metric_names() if m not in (config["metrics"].get("names") or [])]
    if missing:
        raise ConfigError(f"acquisition '{acquisition.name}' weighs metric '{missing[0]}'; add it to metrics.names")


def _json(config: dict) -> str:
    import json

    return json.dumps(config, sort_keys=True)
