"""Exports on disk: a dry run through the real CLI writes nothing to the platform; damaged exports and the
export helper's mistakes end in one line naming the file (and the JSON line and column), exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plugins.encord import export
from plugins.encord.standin_project import WRITE_LOG, OfflineProject
from plugins.errors import InputError
from tests.encord_fake import example_export

ROOT = Path(__file__).resolve().parents[1]
BROKEN_ROWS = '[\n  {"metadata": {,}}\n]\n'  # line 2, column 17: the comma where a key belongs
BROKEN_PROJECT = '{"title": "x",\n "ontology": }\n'  # line 2, column 14: the brace where a value belongs


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORD_SSH_KEY")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_dry_run_through_the_cli_writes_nothing_and_apply_writes_the_plan(tmp_path):
    from runner.app import run as run_config

    source = example_export(tmp_path, n=30, labelled=10)
    original = snapshot(source)
    run_dir = tmp_path / "project"
    dry = run("-m", "runner", "+experiment=encord_export", f"project.source.path={source}", "selection.budget=5",
              f"hydra.run.dir={run_dir}", "act.apply=false")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "dry run: nothing was changed" in dry.stdout
    working = run_dir / "platform"
    assert not (working / WRITE_LOG).exists() and OfflineProject.load(working).written() == []
    assert snapshot(working) == original and snapshot(source) == original

    # The same project directory, applied (in-process: the command line is the point of the dry run above,
    # and tests/test_encord_cli.py applies through it).
    assert run_config(compose(run_dir, source, "act.apply=true"), run_dir, threads=1)["stopped"] == "applied"
    log = OfflineProject.load(working).written()
    plan = json.loads((run_dir / "actions" / "round_000.json").read_text())
    prioritised = sorted(r["data_hash"] for r in plan["records"] if r["action"] == "priority")
    assert len(prioritised) == 5 and plan["status"] == "applied"
    # One bundle of priorities, then one issue per selected task carrying the selection tag (the SDK sends
    # issues one by one).
    assert [w["kind"] for w in log] == ["set_priority"] + ["add_issue"] * 5
    assert sorted(log[0]["data_hashes"]) == prioritised
    assert sorted(h for w in log[1:] for h in w["data_hashes"]) == prioritised
    rows = {r["metadata"]["data_hash"]: r for r in json.loads((working / "label_rows.json").read_text())}
    assert all(rows[h]["issues"][0]["tags"] == ["round_000", "to_label_next"] for h in prioritised)
    assert snapshot(working)["label_rows.json"] != original["label_rows.json"]
    assert snapshot(source) == original  # the export itself is never written


def compose(run_dir: Path, source: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "+experiment=encord_export",
                f"project.source.path={source}",
                f"project.source.working_copy={run_dir}/platform",
                f"project.source.cache_dir={run_dir}/image_cache",
                "selection.budget=5",
                *overrides,
            ],
        )
    return OmegaConf.to_container(cfg, resolve=True)


# --- the runner on a damaged export ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, position",
    [("label_rows.json", BROKEN_ROWS, "line 2, column 17"), ("project.json", BROKEN_PROJECT, "line 2, column 14")],
)
def test_a_damaged_export_is_named_with_its_position_and_never_copied(tmp_path, name, text, position):
    from runner.app import run as run_config
    from runner.errors import ConfigError

    source = example_export(tmp_path, n=20, labelled=6)
    (source / name).write_text(text)
    run_dir = tmp_path / "project"
    with pytest.raises(ConfigError) as caught:
        run_config(compose(run_dir, source), run_dir, threads=1)
    message = str(caught.value)
    assert message.startswith("project.source.path: ") and str(source / name) in message
    assert position in message and "\n" not in message and caught.value.exit_code == 2
    assert not (run_dir / "platform").exists()
    # no half copy either (refused before the run directory was even made)
    assert not run_dir.exists() or not [p for p in run_dir.iterdir() if p.name.startswith(".platform")]


@pytest.mark.slow
def test_a_damaged_export_through_the_cli_is_one_line_and_exit_2(tmp_path):
    source = example_export(tmp_path, n=20, labelled=6)
    rows = source / "label_rows.json"
    rows.write_text(rows.read_text()[:5000])  # truncated mid-file
    expected = f"line {rows.read_text().count(chr(10)) + 1}"  # the end of the file, where the JSON stops
    run_dir = tmp_path / "project"
    done = run("-m", "runner", "+experiment=encord_export", f"project.source.path={source}",
               f"hydra.run.dir={run_dir}")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert str(rows) in lines[0] and expected in lines[0] and "Traceback" not in done.stderr
    assert not (run_dir / "platform").exists()


def test_a_damaged_working_copy_names_the_working_copy(tmp_path):
    source = example_export(tmp_path, n=20, labelled=6)
    working = tmp_path / "copy"
    export.open_export(str(source), "digit", str(tmp_path / "cache"), working_copy=str(working))
    (working / "label_rows.json").write_text(BROKEN_ROWS)
    with pytest.raises(InputError, match=r"^project.source.working_copy: .*line 2, column 17"):
        export.open_export(str(source), "digit", str(tmp_path / "cache"), working_copy=str(working))


def test_the_working_copy_replaces_an_empty_folder_and_refuses_a_foreign_one(tmp_path):
    source = example_export(tmp_path, n=20, labelled=6)
    empty = tmp_path / "empty"
    empty.mkdir()
    export.open_export(str(source), "digit", str(tmp_path / "cache"), working_copy=str(empty))
    assert snapshot(empty) == snapshot(source)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no label_rows.json"):
        export.open_export(str(source), "digit", str(tmp_path / "cache"), working_copy=str(foreign))
    assert snapshot(foreign) == {"notes.txt": b"mine"}


# --- the export helper -------------------------------------------------------------------------------------
def helper(capsys, *argv: str) -> tuple[int, list[str]]:
    code = export.main(list(argv))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_the_helper_names_a_missing_or_damaged_export(tmp_path, capsys):
    code, lines = helper(capsys, "annotate", str(tmp_path / "absent"), "--n", "3")
    assert code == 2 and len(lines) == 1 and "is not a project export" in lines[0]

    source = example_export(tmp_path, n=20, labelled=6)
    before = snapshot(source)
    (source / "answer_key.json").write_text('{"a": "1",\n "b": }')
    code, lines = helper(capsys, "annotate", str(source), "--n", "3")
    assert code == 2 and len(lines) == 1
    assert str(source / "answer_key.json") in lines[0] and "line 2, column 7" in lines[0]
    (source / "answer_key.json").write_bytes(before["answer_key.json"])

    (source / "label_rows.json").write_text(BROKEN_ROWS)
    code, lines = helper(capsys, "annotate", str(source), "--n", "3")
    assert code == 2 and len(lines) == 1 and "line 2, column 17" in lines[0]
    (source / "label_rows.json").write_bytes(before["label_rows.json"])

    code, lines = helper(capsys, "annotate", str(source), "--stage", "Nowhere")
    assert code == 2 and "Annotate 1" in lines[0]


def test_the_helper_refuses_to_overwrite_what_is_not_an_export(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, lines = helper(capsys, "make-example", str(mine), "--n", "10", "--labelled", "2")
    assert code == 2 and len(lines) == 1 and "is not an export" in lines[0]
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_the_helper_command_line_ends_without_a_traceback(tmp_path):
    done = run("-m", "plugins.encord.export", "annotate", str(tmp_path / "absent"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'absent'} is not a project export "
                                                "(needs project.json and label_rows.json)"]
