"""What a config would hand to the processes a run starts: environment variables (hydra.job.env_set), shell lines
(hydra.launcher.setup) and credentials. Refused in one line, exit 2, from any config source, before Hydra runs
anything, unless the user allows them in their own environment; and run directories that cannot be used,
refused without changing a byte of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from runner.composition import parse_command
from runner.errors import ConfigError
from runner.precheck import check_command
from runner.preflight import ALLOW_ENV_SET, ALLOW_LAUNCHER_SETUP, check_output_dir
from tests.conftest import run_cli

DIGITS = ("+experiment=digits", "loop.rounds=1")


def refusal(*argv: str) -> str:
    with pytest.raises(ConfigError) as err:
        check_command(parse_command(argv))
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 2
    return message


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with a sitecustomize.py that the next Python started with it on PYTHONPATH would run, and the
    file it would create."""
    folder, created = tmp_path / "payload", tmp_path / "ran"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(f"open({str(created)!r}, 'w').write('ran')\n")
    return folder, created


@pytest.mark.parametrize("name", ["PYTHONPATH", "PYTHONWARNINGS", "BROWSER", "LD_PRELOAD", "PYTHONSTARTUP"])
def test_env_set_beyond_thread_counts_is_refused(tmp_path, name, monkeypatch):
    monkeypatch.delenv(ALLOW_ENV_SET, raising=False)
    message = refusal(*DIGITS, f"hydra.run.dir={tmp_path / 'run'}", f"+hydra.job.env_set.{name}=x")
    assert message.startswith(f"config key 'hydra.job.env_set.{name}' would set {name}")
    assert f"{ALLOW_ENV_SET}={name}" in message and not (tmp_path / "run").exists()


def test_thread_counts_may_be_set_and_the_user_may_allow_more(tmp_path, monkeypatch):
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    check_command(parse_command([*DIGITS, run_dir, "+hydra.job.env_set.OMP_NUM_THREADS=2"]))
    monkeypatch.setenv(ALLOW_ENV_SET, "BROWSER, PYTHONWARNINGS")
    check_command(parse_command([*DIGITS, run_dir, "+hydra.job.env_set.PYTHONWARNINGS=ignore"]))
    assert "PYTHONPATH" in refusal(*DIGITS, run_dir, "+hydra.job.env_set.PYTHONPATH=x")


def test_a_variable_copied_from_the_users_own_environment_is_theirs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    check_command(parse_command([*DIGITS, f"hydra.run.dir={tmp_path / 'run'}", "hydra.job.env_copy=[PYTHONWARNINGS]"]))


def write_configs(root: Path, payload: Path) -> Path:
    """A config directory whose experiment and group file set PYTHONPATH for the job."""
    (root / "experiment").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "experiment" / "sneaky.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /project: digits\nhydra:\n  job:\n    env_set:\n"
        f"      PYTHONPATH: {payload}\n")
    (root / "model" / "sneaky.yaml").write_text(
        "# @package _global_\nmodel:\n  _target_: plugins.models.sklearn_model.SklearnClassifier\n"
        "  estimator:\n    _target_: sklearn.linear_model.LogisticRegression\n"
        f"hydra:\n  job:\n    env_set:\n      PYTHONPATH: {payload}\n")
    return root


@pytest.mark.parametrize("how", ["experiment", "group file", pytest.param("sweep", marks=pytest.mark.slow)])
def test_env_set_from_any_config_source_is_refused(tmp_path, payload, how):
    folder, _ = payload
    configs = write_configs(tmp_path / "configs", folder)
    searchpath = f"hydra.searchpath=[file://{configs}]"
    argv = {
        "experiment": [searchpath, "+experiment=sneaky"],
        "group file": [searchpath, "+experiment=digits", "model=sneaky"],
        "sweep": ["-m", searchpath, "+experiment=digits", "model=logreg,sneaky", f"hydra.sweep.dir={tmp_path / 's'}"],
    }[how]
    assert "hydra.job.env_set.PYTHONPATH" in refusal(*argv)


@pytest.mark.slow
def test_through_the_command_line_nothing_runs_and_nothing_is_created(tmp_path, payload):
    folder, created = payload
    run_dir = tmp_path / "run"
    done = run_cli("+experiment=digits", f"hydra.run.dir={run_dir}", f"+hydra.job.env_set.PYTHONPATH={folder}",
                   "hydra/launcher=joblib")
    assert done.returncode == 2 and done.stderr.startswith("error: config key 'hydra.job.env_set.PYTHONPATH'")
    assert "Traceback" not in done.stderr and not run_dir.exists() and not created.exists()


def test_launcher_setup_lines_need_the_users_consent(tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOW_LAUNCHER_SETUP, raising=False)
    argv = ["-m", *DIGITS, "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path / 's'}",
            "+hydra.launcher.setup=['touch /tmp/owned']", "seed=0,1"]
    assert refusal(*argv).startswith("config key 'hydra.launcher.setup' would run shell lines before each job")
    monkeypatch.setenv(ALLOW_LAUNCHER_SETUP, "1")
    check_command(parse_command(argv))


@pytest.mark.parametrize("variable", ["ENCORD_SSH_KEY", "ENCORD_SSH_KEY_FILE"])
def test_a_credential_in_a_config_is_refused(tmp_path, monkeypatch, variable):
    secret = "-----BEGIN OPENSSH PRIVATE KEY----- abcdefgh"
    monkeypatch.setenv(variable, secret)
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    message = refusal(*DIGITS, run_dir, f"project.name=${{oc.env:{variable}}}")
    assert message.startswith(f"config key 'project.name' reads the environment variable {variable}")
    # a key pasted in, and one reached through another resolver
    assert "holds the value of the environment variable" in refusal(*DIGITS, run_dir, f"project.name='{secret}'")
    message = refusal("-m", *DIGITS, f"hydra.sweep.dir={tmp_path / 's'}", f"project.name=${{oc.env:{variable}}}",
                      "seed=0,1")
    assert variable in message
    assert not (tmp_path / "run").exists()


def test_a_run_directory_on_a_file_system_that_takes_no_new_entries(tmp_path):
    if os.geteuid() != 0 or not Path("/proc").is_dir():
        pytest.skip("root on Linux: os.access says yes to /proc, which refuses new entries")
    with pytest.raises(ConfigError, match=r"^hydra.run.dir=/proc/x cannot be created under /proc \("):
        check_output_dir("/proc/x", "hydra.run.dir")
    assert "cannot be created" in refusal(*DIGITS, "hydra.run.dir=/proc/x")


def test_a_read_only_directory_is_refused_and_left_as_it_was(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK) and os.geteuid() != 0:
            pytest.skip("this file system ignores permissions")
        if os.geteuid() == 0:
            # root writes anywhere permissions allow nothing; the probe still leaves no entry behind
            check_output_dir(str(locked / "run"), "hydra.run.dir")
            assert list(locked.iterdir()) == []
        else:
            with pytest.raises(ConfigError, match="not writable"):
                check_output_dir(str(locked / "run"), "hydra.run.dir")
    finally:
        locked.chmod(0o755)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_refused_run_directory_is_left_byte_identical(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli("+experiment=digits", "loop.rounds=1", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    before = snapshot(run_dir)
    other = run_cli("+experiment=digits", "loop.rounds=1", "seed=7", f"hydra.run.dir={run_dir}")
    assert other.returncode == 2 and "holds a run with a different config (changed: seed)" in other.stderr
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "state.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x01" * 4000)
    broken = snapshot(damaged)
    refused = run_cli("+experiment=digits", f"hydra.run.dir={damaged}")
    assert refused.returncode == 2 and "is not a usable run store" in refused.stderr
    assert snapshot(run_dir) == before and snapshot(damaged) == broken


@pytest.mark.slow
def test_a_busy_run_directory_is_refused_before_hydra_writes_into_it(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = run_dir / ".run.lock"
    lock.write_text('{"pid": 1, "host": "h", "started": "then"}')
    with open(lock) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        # another process holds it: a child checks
        done = run_cli(python_args=("-c", (
            "import sys\nfrom runner.composition import parse_command\nfrom runner.precheck import check_command\n"
            "from runner.errors import ConfigError\n"
            f"try:\n    check_command(parse_command(['+experiment=digits', 'hydra.run.dir={run_dir}']))\n"
            "except ConfigError as exc:\n    print(exc)\n    sys.exit(2)\n")))
    assert done.returncode == 2 and "is in use by another run (pid 1 on h, started then)" in done.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == [".run.lock"]


def test_experimental_rerun_is_refused():
    assert "python -m runner.replay" in refusal("--experimental-rerun", str(Path(sys.executable)))


def test_a_credential_copied_into_hydras_own_section_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ENCORD_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY----- abcdefgh")
    message = refusal(*DIGITS, f"hydra.run.dir={tmp_path / 'run'}", "hydra.job.env_copy=[ENCORD_SSH_KEY]")
    assert message.startswith("config key 'hydra.job.env_copy' names ENCORD_SSH_KEY, which holds a credential")
    message = refusal(*DIGITS, f"hydra.run.dir={tmp_path}/${{oc.env:ENCORD_SSH_KEY}}")
    assert message.startswith("config key 'hydra.run.dir' reads the environment variable ENCORD_SSH_KEY")
    assert list(tmp_path.iterdir()) == []


def test_help_configures_hydras_logging_from_the_config_so_it_is_checked_too():
    assert "hydra.hydra_logging.handlers.console.class" in refusal(
        "--help", "hydra.hydra_logging.handlers.console.class=subprocess.Popen")
    check_command(parse_command(["--help"]))
