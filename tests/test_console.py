"""What the console says around a run: where its files are, why it stopped, how to resume it after Ctrl-C, the
help page's opening, and the one-line answers to a bare word, a missing extra and a cold start."""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, run_in_process

DIGITS = ("+experiment=digits", "acquisition=random", "selection.budget=5")


def console(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runner"]


def test_the_run_directory_and_the_report_are_named_at_the_start_and_the_end(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1")
    lines = console(caplog)
    report = tmp_path / "report.html"
    assert lines[0] == f"run: directory {tmp_path} | report {report} (written when the run ends)"
    assert lines[-1] == f"done: directory {tmp_path} | report {report}"
    assert report.is_file()
    assert any(line.startswith("round   0/1 |") for line in lines)  # the progress lines are still there


def test_no_report_is_named_when_none_is_written(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1", "report.write=false")
    lines = console(caplog)
    assert lines[0] == f"run: directory {tmp_path} | report none (report.write=false)"
    assert lines[-1] == f"done: directory {tmp_path} | report none (report.write=false)"
    assert not (tmp_path / "report.html").exists()


def test_an_exhausted_pool_is_said_on_the_console(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    # digits' pool is 1,500 items: 1,450 labelled at the start (145 a class) and 25 a round leave none after round 1.
    summary = run_in_process(tmp_path, *DIGITS, "loop.rounds=5", "loop.initial_labels=1450", "selection.budget=25")
    assert summary["stopped"] == "pool_exhausted"
    stops = [line for line in console(caplog) if "pool exhausted" in line or line.startswith("stopped")]
    assert stops == ["pool exhausted at round 2: no unlabelled candidate is left (after filters); nothing to select"]


def test_other_stops_name_their_round(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runner")
    run_in_process(tmp_path, *DIGITS, "loop.rounds=1")
    stops = [line for line in console(caplog) if line.startswith(("stopped", "pool exhausted"))]
    assert stops == ["stopped after round 1: every round of loop.rounds is done (raise loop.rounds to go on)"]


@pytest.mark.slow
def test_ctrl_c_names_the_command_that_resumes_and_the_resumed_run_is_the_uninterrupted_one(tmp_path):
    # A digits round takes a few hundredths of a second, and a quiet machine finished 30 of them before the signal
    # was handled; MNIST's 29 rounds take seconds, so the signal sent after the first round lands mid-run.
    overrides = ("+experiment=mnist",)
    reference = tmp_path / "reference"
    run_in_process(reference, *overrides)

    # The directory is not named on the command line: the line must name the one Hydra picked.
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    # Run from elsewhere, so that the directory Hydra picks is under tmp_path (the runner found by PYTHONPATH).
    env.update(PYTHONHASHSEED="0", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    # A shell that starts the tests in the background leaves SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: the child gets the default disposition back, as a terminal's Ctrl-C would find it.
    process = subprocess.Popen([sys.executable, "-m", "runner", *overrides], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("round "):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert not out.rstrip().endswith("report.html")  # it did not finish before the signal

    prefix = "interrupted; resume with: python -m runner "
    assert lines[0].startswith(prefix)
    resume = shlex.split(lines[0][len(prefix):])
    assert resume[:-1] == list(overrides) and resume[-1].startswith("hydra.run.dir=")
    picked = tmp_path / resume[-1].split("=", 1)[1]
    assert (picked / "state.sqlite").is_file()

    resumed = run_cli(*resume, cwd=tmp_path, env_extra={"PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert selections(picked) == selections(reference) and len(selections(reference)) == 29


def selections(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "selected").glob("round_*.csv"))}


def test_the_resume_line_adds_the_directory_only_when_the_command_did_not_name_it():
    from runner.errors import interrupted_line

    added = interrupted_line(["+experiment=digits", "seed=1"], "hydra.run.dir", "/runs/a b")
    assert added == "interrupted; resume with: python -m runner +experiment=digits seed=1 'hydra.run.dir=/runs/a b'"
    named = interrupted_line(["+experiment=digits", "hydra.run.dir=x"], "hydra.run.dir", "/abs/x")
    assert named == "interrupted; resume with: python -m runner +experiment=digits hydra.run.dir=x"
    swept = interrupted_line(["-m", "seed=0,1"], "hydra.sweep.dir", "/sweeps/s")
    assert swept == "interrupted; resume with: python -m runner -m seed=0,1 hydra.sweep.dir=/sweeps/s"


def test_help_opens_with_what_the_tool_does_and_the_five_commands_used_most():
    from runner.hydra_configs import ABOUT, COMMON_COMMANDS

    page = run_cli("--help")
    assert page.returncode == 0, page.stderr
    text = page.stdout
    assert text.startswith(ABOUT + "\n")
    assert "\n" not in ABOUT and "active learning" in ABOUT  # one paragraph that says what the tool does
    before_groups = text[: text.index("== Config groups")]
    listed = [line for line in before_groups.splitlines() if line.startswith("  python -m runner")]
    assert listed == list(COMMON_COMMANDS) and len(listed) == 5
    # Each is a real command: the runner's own, and an experiment that exists.
    for line in listed:
        command = line.split("#")[0].split()
        assert command[:3] == ["python", "-m", "runner"] or command[:3] == ["python", "-m", "runner.report"]
        for word in command:
            if word.startswith("+experiment="):
                assert (REPO / "conf" / "experiment" / f"{word.split('=')[1]}.yaml").is_file()


def test_a_bare_experiment_name_is_answered_with_the_override_it_means():
    result = run_cli("mnist")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: 'mnist' is not an override (key=value); did you mean +experiment=mnist?"]


def test_a_bare_word_that_names_no_experiment_lists_the_experiments():
    from runner.composition import parse_overrides
    from runner.errors import ConfigError

    experiments = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    with pytest.raises(ConfigError) as caught:
        parse_overrides(["mnst"])
    assert str(caught.value) == (
        "'mnst' is not an override (key=value); to run an experiment write +experiment=NAME, one of: "
        f"{', '.join(experiments)}; did you mean 'mnist'?")
    assert "digits" in experiments and "mnist" in experiments
    with pytest.raises(ConfigError, match="missing EQUAL"):  # a dotted key without a value keeps the parser's words
        parse_overrides(["selection.budget"])


def needs_lightgbm() -> object:
    """A plugin that imports an optional extra's package when it is built."""
    import lightgbm  # noqa: F401

    return object()


@pytest.mark.parametrize(("model", "module"), [("xgboost", "xgboost"), ("lightgbm", "lightgbm")])
def test_a_missing_extra_names_the_install_command(model, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    result = run_cli("+experiment=digits", f"model={model}")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: config key 'model.estimator._target_' names '{module}.")
    assert line.endswith(f"No module named '{module}'; install it with pip install -e \".[boost]\"")


def test_a_plugin_that_imports_a_missing_extra_names_the_install_command():
    from runner.errors import ConfigError, install_hint
    from runner.instantiate import instantiate_node

    if importlib.util.find_spec("lightgbm") is not None:
        pytest.skip("lightgbm is installed")
    with pytest.raises(ConfigError) as caught:
        instantiate_node({"_target_": "tests.test_console.needs_lightgbm"}, "model")
    assert str(caught.value).endswith("No module named 'lightgbm'; install it with pip install -e \".[boost]\"")
    assert install_hint(ModuleNotFoundError("No module named 'ray'", name="ray")) == (
        '; install it with pip install -e ".[distributed]"')
    assert install_hint(ModuleNotFoundError("No module named 'nope'", name="nope")) == ""
    assert install_hint(ValueError("xgboost")) == ""


def test_a_cold_start_refusal_names_the_strategies_that_start_cold(tmp_path):
    from runner.assemble import COLD_START, assemble
    from runner.errors import ConfigError
    from tests.conftest import compose_config

    with pytest.raises(ConfigError) as caught:
        assemble(compose_config("+experiment=digits", "acquisition=margin", "loop.initial_labels=0"), tmp_path)
    assert str(caught.value) == (
        "acquisition 'margin' needs a trained model; loop.initial_labels=0 leaves round 0 without one (set "
        "loop.initial_labels > 0, or start cold with acquisition=random, typiclust, probcover or image_diversity)")
    # Each strategy named is one that a cold start is not refused with.
    for name in COLD_START:
        assemble(compose_config("+experiment=digits", f"acquisition={name}", "loop.initial_labels=0"), tmp_path)
