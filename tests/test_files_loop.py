"""The file-based human loop (act=files), and what the runner does with the folder and embeddings sources: skipped
files, manifest tags, the split of partly labelled data, and the refusals of what needs images on vectors."""

from __future__ import annotations

import csv
import json
import logging
import re
import shlex
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from plugins.errors import InputError
from plugins.selection.initial import split_items
from runner.errors import ConfigError
from tests.conftest import REPO, run_cli, run_in_process
from tests.test_cli import KILLER
from tests.test_folder_source import DIGITS, digit, save

BUDGET = 6
LABELLED, TESTS = range(0, 24), range(70, 90)  # manifest labels: pool items 0..23, test items 70..89


def truth(item_id: str) -> str:
    return str(DIGITS.target[int(Path(item_id).stem)])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """90 digits as PNG and JPEG files of many sizes, gray and colour, and a broken file; a manifest labelling 24
    pool items and 20 test items, tagging the even ones."""
    base = tmp_path_factory.mktemp("files_loop")
    root = base / "photos"
    rows = ["path,label,split,tags"]
    for n in range(90):
        name = f"img/{n:03d}.{'png' if n % 2 else 'jpg'}"
        colour = (1.0, 0.7, 0.3) if n % 3 == 0 else None
        save(digit(n, 16 + n % 7 * 13, 20 + n % 5 * 17, colour), root / name)
        label = str(DIGITS.target[n]) if n in LABELLED or n in TESTS else ""
        rows.append(f"{name},{label},{'test' if n in TESTS else ''},{'' if n % 2 else 'even'}")
    (root / "img" / "broken.jpg").write_bytes(b"")
    manifest = base / "photos.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return {"root": root, "manifest": manifest, "cache": base / "cache", "base": base}


def overrides(project: dict[str, Path], *extra: str) -> tuple[str, ...]:
    return ("project=folder", f"project.source.path={project['root']}",
            f"project.source.manifest={project['manifest']}", f"project.source.cache_dir={project['cache']}",
            "project.source.image_size=16", "loop.mode=human", "act=files", f"selection.budget={BUDGET}", *extra)


def batch(run_dir: Path, round_: int) -> list[dict[str, str]]:
    with open(run_dir / "to_label" / f"round_{round_:03d}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def answer(run_dir: Path, *rows: tuple[str, str]) -> None:
    """Append answer rows to the project's labels file (written with its header the first time)."""
    path = run_dir / "labels.csv"
    text = path.read_text() if path.exists() else "item_id,label\n"
    path.write_text(text + "".join(f"{item},{label}\n" for item, label in rows))


def stored_labels(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        rows = db.execute("SELECT items.item_id, labels.label FROM labels JOIN items USING (idx)").fetchall()
    return dict(rows)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file a round leaves, byte for byte; summary.json less what it measures of the invocation itself."""
    found = {}
    for path in sorted(run_dir.rglob("*")):
        name = str(path.relative_to(run_dir))
        if not path.is_file() or name in (".run.lock", "runner.log") or ".hydra" in path.parts or "sqlite-" in name:
            continue
        found[name] = path.read_bytes()
    if "summary.json" in found:
        summary = json.loads(found["summary.json"])
        summary.pop("resources")
        found["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return found


def other(item_id: str) -> str:
    return str((int(truth(item_id)) + 1) % 10)


def answers_round_0(run_dir: Path) -> None:
    """Four of round 0's six answered (two stay open; the first one twice, the later row right), a junk row, and
    an item nobody asked for."""
    asked = [r["item_id"] for r in batch(run_dir, 0)]
    answer(run_dir, (asked[0], other(asked[0])), *[(i, truth(i)) for i in asked[:4]], ("img/nothing.png", "3"),
           ("img/030.jpg", truth("img/030.jpg")))


def answers_round_1(run_dir: Path) -> None:
    """A late answer (an item of round 0), a changed answer (round 0's first item, re-labelled) and four of round
    1's six."""
    first, second = batch(run_dir, 0), batch(run_dir, 1)
    late, changed = first[4]["item_id"], first[0]["item_id"]
    fresh = [r["item_id"] for r in second if r["reason"] == "selected"][:4]
    answer(run_dir, (late, truth(late)), (changed, other(changed)), *[(i, truth(i)) for i in fresh])


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def reference(project, tmp_path_factory) -> dict:
    """Three rounds with answers between them, in this process, and the same command again after round 1: what
    each invocation said, and the files and labels after each."""
    run_dir = tmp_path_factory.mktemp("reference") / "labelling"
    runner_log = logging.getLogger("runner")
    said, level = Lines(), runner_log.level
    runner_log.addHandler(said)
    runner_log.setLevel(logging.INFO)
    found: dict = {"run_dir": run_dir, "files": [], "labels": [], "said": []}

    def invoke() -> None:
        said.lines = []
        run_in_process(run_dir, *overrides(project))
        found["said"].append(said.lines)
        found["files"].append(snapshot(run_dir))
        found["labels"].append(stored_labels(run_dir))

    try:
        invoke()
        answers_round_0(run_dir)
        invoke()
        invoke()  # no new answers
        answers_round_1(run_dir)
        invoke()
    finally:
        runner_log.removeHandler(said)
        runner_log.setLevel(level)
    return found


def test_round_0_asks_for_the_batch_with_suggestions_and_pictures(project, reference):
    run_dir = reference["run_dir"]
    first = batch(run_dir, 0)
    assert list(first[0]) == ["rank", "item_id", "path", "score", "suggested_label", "suggested_probability",
                              "reason", "given_label", "asked_in"]
    assert [int(r["rank"]) for r in first] == list(range(1, BUDGET + 1))
    assert {r["reason"] for r in first} == {"selected"} and {r["asked_in"] for r in first} == {"0"}
    unlabelled = {f"img/{n:03d}.{'png' if n % 2 else 'jpg'}" for n in range(24, 70)}
    assert {r["item_id"] for r in first} <= unlabelled
    assert all(Path(r["path"]) == project["root"] / r["item_id"] and Path(r["path"]).is_file() for r in first)
    assert all(r["suggested_label"] in {str(c) for c in range(10)} and 0 < float(r["suggested_probability"]) <= 1
               for r in first)
    page = (run_dir / "to_label" / "round_000.html").read_text()
    assert page.count('src="data:image/png;base64,') == BUDGET and all(r["item_id"] in page for r in first)
    assert len(page) < 200_000  # small: thumbnails only
    assert (run_dir / "skipped_files.csv").read_text() == "file,reason\nimg/broken.jpg,empty file: 0 bytes\n"
    assert "img/000.jpg,even,-1" in (run_dir / "tags.csv").read_text()  # manifest tags are store tags
    assert len(reference["labels"][0]) == len(LABELLED)  # the manifest's pool labels are the initial ones
    said = reference["said"][0]
    assert any("no answers yet" in line and "test accuracy is n/a" not in line for line in said)
    assert any(line.startswith("round 0: 6 to label in to_label/round_000.csv") for line in said)


def test_answers_open_the_next_round_and_unanswered_items_stay_asked(reference):
    run_dir = reference["run_dir"]
    first, second, third = batch(run_dir, 0), batch(run_dir, 1), batch(run_dir, 2)
    pulled = [line for line in reference["said"][1] if "answers" in line and "rejected" in line]
    assert len(pulled) == 1 and "7 answers" in pulled[0] and "1 rejected (1 unknown item id" in pulled[0]
    assert "labels_rejected.csv" in pulled[0]
    assert (run_dir / "labels_rejected.csv").read_text() == (
        "line,item_id,label,reason\n7,img/nothing.png,3,unknown item id\n")
    assert [r["reason"] for r in second] == ["selected"] * BUDGET + ["still open"] * 2
    assert [r["item_id"] for r in second[BUDGET:]] == [r["item_id"] for r in first[4:]]  # open ones, in their order
    assert [r["asked_in"] for r in second[BUDGET:]] == ["0", "0"] and second[-1]["rank"] == str(BUDGET + 2)
    assert not {r["item_id"] for r in second[:BUDGET]} & ({r["item_id"] for r in first} | {"img/030.jpg"})
    labels = reference["labels"][1]
    assert len(labels) == len(LABELLED) + 5 and labels[first[0]["item_id"]] == int(truth(first[0]["item_id"]))

    assert any("5 new labels; 1 changed, 0 removed" in line for line in reference["said"][3])
    still = [r["item_id"] for r in third if r["reason"] == "still open"]
    asked_before = [r["item_id"] for r in first[5:]] + [r["item_id"] for r in second if r["reason"] == "selected"][4:]
    assert still == asked_before  # the late answer closed its item; the rest stay open, oldest first
    selected = [r["item_id"] for b in (first, second, third) for r in b if r["reason"] == "selected"]
    assert len(selected) == len(set(selected)) == 3 * BUDGET  # nothing asked twice
    labels = reference["labels"][3]
    changed, late = first[0]["item_id"], first[4]["item_id"]
    assert labels[changed] == int(other(changed))  # re-labelled: the last of its answers wins
    assert labels[late] == int(truth(late))
    rounds = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_labeled"] for r in rounds] == [24, 29, 34]
    assert all(r["test_accuracy"] is not None and r["n_test_labeled"] == 20 for r in rounds)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "human" and summary["open_round"] == 2 and summary["open_items"] == len(still) + 6
    assert summary["stopped"] == "waiting_for_answers"


def test_the_same_command_without_new_answers_changes_nothing(reference):
    assert reference["files"][2] == reference["files"][1]
    assert reference["labels"][2] == reference["labels"][1]
    assert any("0 new labels" in line for line in reference["said"][2])


def test_label_suspects_are_asked_in_the_same_file_with_the_reason(project, tmp_path):
    flipped = {0, 6, 12, 18}
    rows = ["path,label,split"]
    for n in range(90):
        label = DIGITS.target[n] if n in LABELLED or n in TESTS else ""
        label = (label + 5) % 10 if n in flipped else label
        rows.append(f"img/{n:03d}.{'png' if n % 2 else 'jpg'},{label},{'test' if n in TESTS else ''}")
    noisy = project["base"] / "noisy.csv"
    noisy.write_text("\n".join(rows) + "\n")
    run_dir = tmp_path / "labelling"
    run_in_process(run_dir, *overrides(project, f"project.source.manifest={noisy}", "audit=cleanlab",
                                       "selection.relabel_share=0.5"))
    rows_ = batch(run_dir, 0)
    suspects = [r for r in rows_ if r["reason"] == "label suspect"]
    assert [r["reason"] for r in rows_] == ["selected"] * (BUDGET - len(suspects)) + ["label suspect"] * len(suspects)
    assert len(suspects) == BUDGET // 2
    for row in suspects:
        n = int(Path(row["item_id"]).stem)
        given = (DIGITS.target[n] + 5) % 10 if n in flipped else DIGITS.target[n]
        assert n in LABELLED and row["given_label"] == str(given) and row["suggested_label"] != row["given_label"]
        assert 0 < float(row["score"]) <= 1 and row["suggested_probability"] == ""
    assert any(int(Path(r["item_id"]).stem) in flipped for r in suspects)  # few labels: a weak judge
    assert "label suspect" in (run_dir / "to_label" / "round_000.html").read_text()


# --- kill -9 ----------------------------------------------------------------------------------------------------
def comparable(files: dict[str, bytes]) -> dict[str, bytes]:
    """What two runs of the same answers must agree on to the byte; the seconds stages took left out."""
    kept = {name: data for name, data in files.items()
            if name.startswith(("to_label/", "selected/")) or name in (
                "tags.csv", "labels.csv", "labels_rejected.csv", "skipped_files.csv")}
    rows = [json.loads(line) for line in files["metrics.jsonl"].splitlines()]
    kept["metrics.jsonl"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows]).encode()
    return kept


def killed_loop(project: dict[str, Path], run_dir: Path, mode: str, stage: str, rounds: int) -> None:
    """``rounds`` rounds, each killed (kill -9) at ``stage`` and resumed, with the reference's answers between."""
    for round_ in range(rounds):
        args = (*overrides(project), f"hydra.run.dir={run_dir}")
        killed = run_cli(mode, f"{stage}:{round_}", *args, python_args=("-c", KILLER))
        assert killed.returncode == -9, killed.stderr[-2000:]
        resumed = run_cli(*args)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        if round_ + 1 < rounds:
            (answers_round_0, answers_round_1)[round_](run_dir)


@pytest.mark.slow
def test_a_round_killed_while_it_writes_its_batch_resumes_to_the_same_files(project, reference, tmp_path):
    run_dir = tmp_path / "labelling"
    killed_loop(project, run_dir, "inside", "act", rounds=1)
    assert comparable(snapshot(run_dir)) == comparable(reference["files"][0])
    assert stored_labels(run_dir) == reference["labels"][0]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "stage"), [
    ("inside", "pull"), ("after", "pull"), ("inside", "embed"), ("inside", "train"), ("after", "evaluate"),
    ("inside", "score"), ("after", "select"), ("after", "act"),
])
def test_every_round_killed_at_a_stage_resumes_to_the_same_files(project, reference, tmp_path, mode, stage):
    run_dir = tmp_path / "labelling"
    killed_loop(project, run_dir, mode, stage, rounds=3)
    assert comparable(snapshot(run_dir)) == comparable(reference["files"][3])
    assert stored_labels(run_dir) == reference["labels"][3]
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        twice = db.execute("SELECT round, stage FROM stages GROUP BY round, stage HAVING COUNT(*) > 1").fetchall()
    assert twice == []


# --- refusals -------------------------------------------------------------------------------------------------
def refused(run_dir: Path, *args: str) -> str:
    """The one line a run of ``args`` is refused with (exit code 2)."""
    with pytest.raises(ConfigError) as raised:
        run_in_process(run_dir, *args)
    message = str(raised.value)
    assert "\n" not in message and raised.value.exit_code == 2
    return message


@pytest.mark.parametrize(("content", "expected"), [
    (b"PK\x03\x04\x14\x00\x00\x00binary", "is not a CSV file of answers with item_id and label columns (it holds "
                                           "binary data)"),
    (b"\xff\xfe\xfa not text", "(it is not UTF-8 text)"),
    (b"id,class\nimg/024.jpg,4\n", "(no item_id or label column; its first line: 'id,class')"),
    (b"item_id,label\nimg/024.jpg,4\nimg/025.png,fox\n", "line 3: class 'fox' appears only in the labels file (the "
                                                          "project's classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
])
def test_a_bad_labels_file_is_refused_in_one_line_and_the_corrected_command_works(project, tmp_path, content,
                                                                                   expected):
    run_dir = tmp_path / "labelling"
    run_dir.mkdir()
    labels = run_dir / "labels.csv"
    labels.write_bytes(content)
    message = refused(run_dir, *overrides(project))
    assert message.startswith(f"act.labels: {labels}") and expected in message
    assert sorted(p.name for p in run_dir.iterdir()) == ["labels.csv"]  # nothing else written
    labels.write_text("item_id,label\nimg/024.jpg,4\n")
    run_in_process(run_dir, *overrides(project))
    assert stored_labels(run_dir)["img/024.jpg"] == 4 and len(batch(run_dir, 0)) == BUDGET


def test_with_the_classes_named_an_unknown_class_is_a_row_to_list(project, tmp_path):
    run_dir = tmp_path / "labelling"
    run_dir.mkdir()
    (run_dir / "labels.csv").write_text("item_id,label\nimg/024.jpg,4\nimg/025.png,fox\nimg/070.jpg,1\n,2\n")
    run_in_process(run_dir, *overrides(project, f"project.source.classes=[{','.join(map(str, range(10)))}]"))
    assert (run_dir / "labels_rejected.csv").read_text().splitlines() == [
        "line,item_id,label,reason", "3,img/025.png,fox,unknown class",
        "4,img/070.jpg,1,a test item (its label is the manifest's)", "5,,2,no item_id"]


def test_act_files_and_the_loop_mode_go_together(project, tmp_path):
    simulated = refused(tmp_path / "a", *overrides(project, "loop.mode=simulate"))
    assert "act=files is the file-based human loop: add loop.mode=human" in simulated
    human = refused(tmp_path / "b", *[o for o in overrides(project) if o != "act=files"])
    assert "loop.mode=human needs act=files (answers from a labels file) or a platform's act" in human
    assert not any(list((tmp_path / d).iterdir()) for d in ("a", "b"))


def test_a_simulated_run_directory_is_not_a_file_loop_project(project, tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, "+experiment=digits", "loop.rounds=1")
    assert "holds a simulated run" in refused(run_dir, *overrides(project))


# --- the sources in simulation --------------------------------------------------------------------------------
def manifest(project: dict[str, Path], name: str, labelled: range) -> Path:
    """A manifest of the project's folder without a split column: labels for ``labelled``, the even ones
    tagged."""
    rows = ["path,label,tags"]
    for n in range(90):
        rows.append(f"img/{n:03d}.{'png' if n % 2 else 'jpg'},{DIGITS.target[n] if n in labelled else ''},"
                    f"{'' if n % 2 else 'even'}")
    path = project["base"] / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_simulation_lists_skipped_files_and_filters_by_manifest_tags(project, tmp_path):
    run_dir = tmp_path / "run"
    run_in_process(run_dir, *overrides(project, "loop.mode=simulate", "act=oracle", "project.test_size=20",
                                       "loop.rounds=1", "loop.initial_labels=20", "filters.tags.exclude=[even]",
                                       f"project.source.manifest={manifest(project, 'full.csv', range(90))}"))
    assert (run_dir / "skipped_files.csv").read_text() == "file,reason\nimg/broken.jpg,empty file: 0 bytes\n"
    tags = [row.split(",") for row in (run_dir / "tags.csv").read_text().splitlines()[1:]]
    assert sorted(i for i, tag, round_ in tags if tag == "even") == [f"img/{n:03d}.jpg" for n in range(0, 90, 2)]
    assert {r for _, tag, r in tags if tag == "even"} == {"-1"}
    with open(run_dir / "selected" / "round_000.csv", newline="") as handle:
        chosen = [row["item_id"] for row in csv.DictReader(handle)]
    assert len(chosen) == BUDGET and not [i for i in chosen if int(Path(i).stem) % 2 == 0]


def test_a_partly_labelled_folder_draws_its_test_items_from_the_labelled_ones(project):
    from runner.assemble import assemble
    from tests.conftest import compose_config

    labelled = range(0, 40)
    config = compose_config(*overrides(project, "loop.mode=simulate", "act=oracle", "project.test_size=15",
                                       f"project.source.manifest={manifest(project, 'part.csv', labelled)}"))
    parts = assemble(config)
    plan = parts.labeller.start_plan
    test = [str(i) for i, s in zip(plan.item_ids, plan.split, strict=True) if s == "test"]
    assert len(test) == 15 and all(int(Path(i).stem) in labelled for i in test)


def test_split_items_keeps_unlabelled_items_in_the_pool():
    rng = np.random.default_rng(0)
    labels = np.array([-1] * 50 + list(range(5)) * 6)
    split = split_items(labels, 10, rng)
    assert (split == "test").sum() == 10 and (labels[split == "test"] >= 0).all()
    assert np.bincount(labels[split == "test"]).tolist() == [2] * 5  # stratified
    every = np.arange(40) % 4  # every item labelled: the split as it always was
    assert (split_items(every, 8, np.random.default_rng(1)) == "test").sum() == 8
    with pytest.raises(InputError, match=r"project.test_size=30 needs more labelled items than the 30 there are"):
        split_items(labels, 30, rng)


# --- items that are vectors -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vectors(project) -> dict[str, Path]:
    """Principal components of 150 digits with a manifest: labels for 60 (20 of them test items), a thumbnail
    file for every third item."""
    from sklearn.decomposition import PCA

    base = project["base"] / "vectors"
    base.mkdir()
    rows = PCA(12, random_state=0).fit_transform(DIGITS.data[:150]).astype(np.float32)
    ids = [f"d{i:03d}" for i in range(150)]
    np.savez(base / "vectors.npz", embeddings=rows, ids=np.array(ids))
    lines = ["item_id,label,split,thumbnail"]
    for i, item in enumerate(ids):
        thumb = f"thumbs/{item}.png" if i % 3 == 0 else ""
        if thumb:
            save(digit(i, 24, 24), base / thumb)
        label = str(DIGITS.target[i]) if i < 40 or i >= 130 else ""
        lines.append(f"{item},{label},{'test' if i >= 130 else ''},{thumb}")
    (base / "vectors.csv").write_text("\n".join(lines) + "\n")
    return {"path": base / "vectors.npz", "manifest": base / "vectors.csv", "base": base}


def on_vectors(vectors: dict[str, Path], *extra: str) -> tuple[str, ...]:
    return ("project=embeddings", f"project.source.path={vectors['path']}",
            f"project.source.manifest={vectors['manifest']}", f"selection.budget={BUDGET}", *extra)


def test_a_file_loop_on_vectors_shows_the_thumbnail_files_or_none(vectors, tmp_path):
    run_dir = tmp_path / "labelling"
    run_in_process(run_dir, *on_vectors(vectors, "loop.mode=human", "act=files", "acquisition=margin"))
    rows = batch(run_dir, 0)
    assert len(rows) == BUDGET
    for row in rows:
        pictured = int(row["item_id"][1:]) % 3 == 0
        assert row["path"] == (str((vectors["base"] / "thumbs" / f"{row['item_id']}.png").resolve()) if pictured
                               else "")
    page = (run_dir / "to_label" / "round_000.html").read_text()
    assert page.count('alt="item ') == sum(bool(r["path"]) for r in rows)
    assert page.count("no picture (a vector)") == sum(not r["path"] for r in rows)
    assert not (run_dir / "skipped_files.csv").exists()  # nothing skipped: no file
    report = (run_dir / "report.html").read_text()
    assert all((f'alt="item {r["item_id"]}"' in report) == bool(r["path"]) for r in rows)


@pytest.mark.parametrize("choice", ["metrics=quality", "embedder=self_supervised", "embedder=clip"])
def test_what_needs_images_is_refused_on_vectors_before_anything_is_written(vectors, tmp_path, choice):
    extra = (choice, "project.test_size=20")
    if choice == "embedder=clip":
        pytest.importorskip("onnx")
        from tests.test_pretrained_onnx import encoder

        extra += (f"embedder.weights_path={encoder(tmp_path / 'enc.onnx', ['n', 1, 28, 28])}",)
    run_dir = tmp_path / "run"
    message = refused(run_dir, *on_vectors(vectors, *extra))
    assert "project 'embeddings' holds vectors, not images" in message
    if choice == "metrics=quality":
        assert message.startswith("metrics.names: 'brightness' is computed from images")
    else:
        assert message.startswith("embedder=plugins.embedders.") and "use embedder=pixels" in message
    assert list(run_dir.iterdir()) == []


# --- the README's commands ------------------------------------------------------------------------------------
def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text[text.index("### Your own data"):text.index("### Sweeps, reports, replays")]


def readme_commands(section: str) -> list[str]:
    """Each command of the section's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line.split("  #")[0].strip() for line in joined.splitlines() if "python -m runner" in line]
    return commands


def readme_files(section: str) -> dict[str, str]:
    """The files the section says to save: ``as `PATH`...:`` and the code block after it."""
    return dict(re.findall(r"as `([^`]+)`[^\n]*:\n\n```\w+\n(.*?)```", section, flags=re.S))


def invoke(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A README command, as typed in ``cwd``: its environment assignments kept, the repository importable."""
    words = shlex.split(command)
    env = dict(word.split("=", 1) for word in words[: words.index("python")])
    env["PYTHONPATH"] = ":".join([*filter(None, [env.get("PYTHONPATH")]), str(REPO)])
    env["AL_RUNNER_CACHE"] = str(cwd / "cache")
    assert words[words.index("python"):][:3] == ["python", "-m", "runner"], command
    done = run_cli(*words[words.index("python") + 3:], cwd=cwd, env_extra=env)
    assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    return done


def newest_run(cwd: Path) -> Path:
    return max((cwd / "outputs" / "runs").glob("*/*"), key=lambda p: p.stat().st_mtime)


def readme_data(cwd: Path) -> None:
    """What the section's commands read: photos/ in class folders, a manifest labelling some of them (a test
    split among those), and vectors with a manifest labelling every row."""
    from sklearn.decomposition import PCA

    rows = ["path,label,split"]
    for n in range(200):
        path = f"{DIGITS.target[n]}/{n:03d}.{'png' if n % 2 else 'jpg'}"
        save(digit(n, 16 + n % 7 * 13, 20 + n % 5 * 17, (1.0, 0.7, 0.3) if n % 3 == 0 else None), cwd / "photos" / path)
        known = n < 30 or n >= 170
        rows.append(f"{path},{DIGITS.target[n] if known else ''},{'test' if n >= 170 else ''}")
    (cwd / "photos.csv").write_text("\n".join(rows) + "\n")
    ids = [f"d{i:03d}" for i in range(200)]
    np.savez(cwd / "vectors.npz", embeddings=PCA(12, random_state=0).fit_transform(DIGITS.data[:200]),
             ids=np.array(ids))
    (cwd / "vectors.csv").write_text("\n".join(["item_id,label", *[f"{i},{DIGITS.target[k]}" for k, i in
                                                                  enumerate(ids)]]) + "\n")


@pytest.mark.slow
def test_the_readmes_commands_run_as_written(tmp_path):
    section = readme_section()
    for name, content in readme_files(section).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert set(readme_files(section)) == {"my_conf/model/knn.yaml", "my_code/my_nets.py",
                                          "my_conf/model/small_cnn.yaml"}
    readme_data(tmp_path)
    commands = readme_commands(section)
    assert len(commands) == 5
    for command in commands:
        if "act=files" in command:  # the walk-through: three rounds, answers between them
            project = tmp_path / "labelling"
            for round_ in range(3):
                invoke(command, tmp_path)
                asked = batch(project, round_)
                assert asked and all(Path(r["path"]).is_file() for r in asked)
                answer(project, *[(r["item_id"], r["item_id"].split("/")[0]) for r in asked[:8]])
            assert [r["reason"] for r in batch(project, 2)].count("still open") == 2 * (10 - 8)
            continue
        invoke(command, tmp_path)
        run_dir = newest_run(tmp_path)
        rounds = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert len(rounds) == 6 and json.loads(rounds[-1])["test_accuracy"] > 0.3, command
        if "model=" in command:
            chosen = command.split("model=")[1].split()[0]
            wanted = {"knn": "KNeighborsClassifier", "small_cnn": "my_nets.small_cnn"}[chosen]
            assert wanted in (run_dir / "config.resolved.yaml").read_text()
