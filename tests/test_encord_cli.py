"""The command line on Encord projects: credentials (missing, and never written anywhere) and a full
offline round on an export."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.encord_fake import example_export

ROOT = Path(__file__).resolve().parents[1]
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAAtest-only-QmFkZ2VyQmFkZ2Vy\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRETS = [line for line in KEY.splitlines() if line.strip() and "-----" not in line] + ["test-only"]


def runner(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENCORD_SSH_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
def test_missing_credentials_exit_2_with_one_line(tmp_path):
    done = runner(
        "+experiment=encord",
        "project.source.project_hash=p",
        "project.source.classification=digit",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ENCORD_SSH_KEY_FILE" in lines[0] and "ENCORD_SSH_KEY" in lines[0]


def files_text(*roots: Path) -> list[str]:
    return [p.read_bytes().decode("latin-1") for root in roots for p in root.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_the_credential_never_reaches_the_run_directory_or_logs_in_process(
    tmp_path, monkeypatch, capsys, caplog
):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from runner.app import run as run_config

    export = example_export(tmp_path, n=30, labelled=10)
    run_dir = tmp_path / "run"
    monkeypatch.setenv("ENCORD_SSH_KEY", KEY)
    monkeypatch.delenv("ENCORD_SSH_KEY_FILE", raising=False)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "+experiment=encord",
                "project.source.project_hash=p",
                "project.source.classification=digit",
                f"project.source.cache_dir={run_dir}/cache",
                "allowed_packages=[tests.encord_fake]",
                "+project.source.connect._target_=tests.encord_fake.connect",
                "+project.source.connect._partial_=true",
                f"+project.source.connect.path={export}",
                "selection.budget=5",
                "act.apply=true",
            ],
        )
    caplog.set_level("DEBUG")
    run_config(OmegaConf.to_container(cfg, resolve=True), run_dir, threads=1)
    captured = capsys.readouterr()
    texts = [captured.out, captured.err, caplog.text, *files_text(run_dir, export)]
    assert any("round_000" in t for t in texts)
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.slow
def test_the_credential_never_reaches_the_run_directory_or_logs(tmp_path):
    export = example_export(tmp_path, n=30, labelled=10)
    run_dir = tmp_path / "run"
    done = runner(
        "+experiment=encord",
        "project.source.project_hash=p",
        "project.source.classification=digit",
        "allowed_packages=[tests.encord_fake]",
        "+project.source.connect._target_=tests.encord_fake.connect",
        "+project.source.connect._partial_=true",
        f"+project.source.connect.path={export}",
        "selection.budget=5",
        "act.apply=true",
        f"hydra.run.dir={run_dir}",
        env={"ENCORD_SSH_KEY": KEY},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run_dir / "actions" / "round_000.json").read_text())["status"] == "applied"
    outputs = [done.stdout, done.stderr]
    files = [p for p in run_dir.rglob("*") if p.is_file()] + [p for p in export.rglob("*") if p.is_file()]
    assert any(p.name == "runner.log" for p in files) and any(p.name == "state.sqlite" for p in files)
    for path in files:
        outputs.append(path.read_bytes().decode("latin-1"))
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.slow
def test_full_offline_round_through_the_cli(tmp_path):
    export = example_export(tmp_path, n=60, labelled=20)
    run_dir = tmp_path / "project"
    args = (
        "+experiment=encord_export",
        f"project.source.path={export}",
        "selection.budget=8",
        f"hydra.run.dir={run_dir}",
    )
    first = runner(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "priority" in first.stdout and "applied" in first.stdout
    writes = [json.loads(line) for line in (run_dir / "platform" / "write_log.jsonl").read_text().splitlines()]
    plan = json.loads((run_dir / "actions" / "round_000.json").read_text())
    prioritised = sorted(r["data_hash"] for r in plan["records"] if r["action"] == "priority")
    by_kind: dict[str, list[str]] = {}
    for write in writes:
        by_kind.setdefault(write["kind"], []).extend(write["data_hashes"])
    # One bundle of priorities, and the selection tag as a task issue on each selected task.
    assert sorted(by_kind) == ["add_issue", "set_priority"]
    assert sorted(by_kind["set_priority"]) == prioritised == sorted(by_kind["add_issue"])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "plugins.encord.export",
            "annotate",
            str(run_dir / "platform"),
            "--n",
            "8",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    second = runner(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    # The 8 answers arrive; the fixed share of trusted labels held out for testing (by data hash) leaves training.
    pulled = re.search(r"(\d+) new labels(?:, (\d+) labelled items held out for testing)?", second.stdout)
    assert pulled is not None, second.stdout
    new, held = int(pulled.group(1)), int(pulled.group(2) or 0)
    assert new + held == 8
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["n_labeled"] == rows[0]["n_labeled"] + new
    assert (run_dir / "actions" / "round_001.json").exists() and (run_dir / "tags.csv").exists()
    assert json.loads(export.joinpath("label_rows.json").read_text())  # the export itself untouched:
    assert all(
        r["metadata"]["priority"] in (0.5, None)
        for r in json.loads(export.joinpath("label_rows.json").read_text())
    )
    assert not export.joinpath("write_log.jsonl").exists()
