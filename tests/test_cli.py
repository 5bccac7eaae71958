"""The CLI surface: help, version, show, start-up cost, the terminal display."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from hydraflow import __version__
from hydraflow.cli import cli

from tests.conftest import HYDRAFLOW, recorded, run_cli

Project = Callable[[str], Path]

JOBS = """
jobs:
  train:
    run: python record.py
    sets:
      - each: a=1:3
        all: b=1,2
  sweep:
    submit: python handler.py
"""


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output == f"hydraflow, version {__version__}\n"
    help_text = runner.invoke(cli, ["--help"]).output
    assert "hydraflow run job_sequential --dry-run" in help_text
    run_help = runner.invoke(cli, ["run", "--help"]).output
    for option in ("--dry-run", "--jobs", "--keep-going", "--config"):
        assert option in run_help
    # The list of commands once cut the runs line at "[JOB...]...".
    assert "  runs   List the runs of a store, one row per run.\n" in help_text
    runs_help = runner.invoke(cli, ["runs", "--help"]).output
    assert "runs [OPTIONS] [JOB]... [KEY=VALUES]...\n" in runs_help.splitlines(keepends=True)[0]


def test_show_lists_jobs_with_counts(project: Project) -> None:
    folder = project(JOBS)
    result = run_cli("show", cwd=folder)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "train  run     3 commands  6 runs",
        "sweep  submit  1 command   1 run",
    ]


def test_run_without_a_job_names_the_jobs(project: Project) -> None:
    """A newcomer's first `hydraflow run` got click's "Missing argument 'JOB'"."""
    folder = project(JOBS)
    for args in (["run"], ["run", "--dry-run"]):
        result = run_cli(*args, cwd=folder)
        assert result.returncode == 2
        assert result.stderr == (
            "Error: hydraflow.yaml: name a job to run; the jobs are: train, sweep\n"
        )
    assert (
        "Usage: hydraflow run [OPTIONS] JOB [ARGS]..."
        in run_cli("run", "--help", cwd=folder).stdout
    )


def test_show_one_job_as_normalised_yaml(project: Project) -> None:
    folder = project(JOBS)
    result = run_cli("show", "train", cwd=folder)
    assert result.stdout == (
        "train:\n  run: python record.py\n  sets:\n  - each:\n    - a=1:3\n    all:\n"
        "    - b=1,2\n# 3 commands, 6 runs\n"
    )
    assert run_cli("show", "nope", cwd=folder).returncode == 2


def test_config_option_names_another_file(project: Project) -> None:
    folder = project(JOBS)
    (folder / "hydraflow.yaml").rename(folder / "other.yaml")
    result = run_cli("run", "train", "--dry-run", "-c", "other.yaml", cwd=folder)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3


def test_options_after_overrides_and_unknown_options_pass_through(project: Project) -> None:
    folder = project(JOBS)
    args = ("b=9", "--config-dir", "more", "--dry-run", "--", "c=1", "--flag=x")
    result = run_cli("run", "train", *args, cwd=folder)
    assert result.returncode == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith("python record.py --config-dir more --flag=x --multirun a=1 b=9 ")
    assert first.endswith(" c=1")


def test_a_hydra_mode_refused_beside_multirun_is_one_line(project: Project) -> None:
    """`--cfg job` with `--multirun` is refused by Hydra with a traceback in
    every command; the CLI says so once, before anything starts."""
    folder = project(JOBS)
    for args in (("--cfg", "job"), ("--", "--info"), ("--dry-run", "--", "--run")):
        result = run_cli("run", "train", *args, cwd=folder)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert "cannot go with --multirun" in line
    assert recorded(folder) == []


def test_an_option_neither_hydraflows_nor_hydras_is_refused_at_once(project: Project) -> None:
    """`--tracking-uri` after the job name once reached the app, and every
    command failed in Hydra's parser (exit 2); now the CLI refuses it."""
    folder = project(JOBS)
    expected = {
        ("--tracking-uri", "x.db"): "no such option --tracking-uri (neither hydraflow's nor "
        "Hydra's); the apps' store is set by MLFLOW_TRACKING_URI=URI before the command",
        ("--dryrun",): "did you mean --dry-run?",
        ("-x", "1"): "an option for the program goes after '--': hydraflow run JOB -- -x ...",
    }
    for args, message in expected.items():
        result = run_cli("run", "train", "b=9", *args, cwd=folder)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"Error: hydraflow run: no such option {args[0]} ")
        assert line.endswith(message)
    assert recorded(folder) == []
    after_dashes = run_cli("run", "train", "--dry-run", "--", "--tracking-uri", cwd=folder)
    assert after_dashes.returncode == 0
    assert after_dashes.stdout.startswith("python record.py --tracking-uri --multirun")


def test_starting_the_cli_imports_neither_mlflow_nor_hydra(project: Project) -> None:
    folder = project(JOBS)
    code = (
        "import sys\n"
        "from hydraflow.cli import cli\n"
        "try:\n"
        "    cli(['run', 'train', '--dry-run'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('mlflow', 'hydra', 'omegaconf', 'rich') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().endswith("[]")


def run_on_terminal(folder: Path, env: dict[str, str]) -> str:
    """Runs `hydraflow run train` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [HYDRAFLOW, "run", "train"],
        cwd=folder,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", **env},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_terminal_shows_a_progress_display(project: Project) -> None:
    # Each command lasts long enough for the display to draw it running.
    folder = project(JOBS.replace("run: python record.py", "run: python record.py --sleep 0.5"))
    screen = run_on_terminal(folder, {})
    assert "3/3 commands" in screen
    assert "6/6 runs" in screen
    assert "ran --multirun a=1 b=1,2" in screen
    assert "train: 3 commands: 3 finished; 6 runs: 6 not reported" in screen
    assert "train: command 1 a=1 b=1,2" in screen  # the display names the running command


def test_no_color_is_honoured(project: Project) -> None:
    folder = project(JOBS)
    screen = run_on_terminal(folder, {"NO_COLOR": "1"})
    assert "3/3 commands" in screen
    assert not re.search(r"\x1b\[[0-9;]*3[0-9](;[0-9]+)*m", screen)


def test_options_that_do_not_apply_are_refused(project: Project) -> None:
    folder = project(JOBS)
    result = run_cli("run", "sweep", "-j", "2", cwd=folder)
    assert result.returncode == 2
    assert "-j/--jobs does not apply to submit jobs ('sweep')" in result.stderr
    result = run_cli("run", "sweep", "--keep-going", cwd=folder)
    assert result.returncode == 2
    # A call job runs in hydraflow's own process: nothing starts warm or cold.
    (folder / "hydraflow.yaml").write_text("jobs:\n  f:\n    call: json.dumps\n")
    result = run_cli("run", "f", "--cold", cwd=folder)
    assert result.returncode == 2
    assert "--cold does not apply to call jobs ('f')" in result.stderr


def test_show_says_what_decides_a_count_it_cannot_know(project: Project) -> None:
    folder = project(
        "jobs:\n  h:\n    run: python record.py\n    sets:\n"
        "      - all: a=range(1,5) b=choice(x,y,z)\n"
        "      - all: c=1,2\n"
        "  o:\n    run: python record.py\n    add: hydra/sweeper=optuna\n    sets:\n"
        "      - each: c=1,2\n"
        "  t:\n    run: python record.py\n    add: hydra.sweeper.n_trials=5\n    sets:\n"
        "      - each: c=1,2\n"
    )
    assert run_cli("show", cwd=folder).stdout.splitlines() == [
        "h  run  2 commands  2 runs + runs decided by Hydra's range(), choice()",
        "o  run  2 commands  runs decided by the sweeper",
        "t  run  2 commands  10 runs (n_trials)",
    ]
    assert run_cli("show", "o", cwd=folder).stdout.endswith(
        "# 2 commands, runs decided by the sweeper\n"
    )
    dry = run_cli("run", "h", "--dry-run", cwd=folder)
    assert "h: 2 commands, 2 runs + runs decided by Hydra's range(), choice() (dry" in dry.stderr


def test_a_jobs_file_that_is_not_utf8_is_a_located_error(project: Project) -> None:
    folder = project(JOBS)
    (folder / "hydraflow.yaml").write_bytes(b"jobs:\n  t:\n    run: caf\xe9 x\n")
    result = run_cli("run", "t", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: line 3, column 13: not UTF-8 text (byte 0xe9); "
        "save the file as UTF-8\n"
    )


def test_a_broken_pipe_ends_quietly(project: Project) -> None:
    """`hydraflow run train | head -1`: the reader goes away; the sweep still
    runs to its end, nothing is reported failed, no traceback."""
    folder = project(JOBS)
    result = subprocess.run(
        f"{HYDRAFLOW} run train | head -1",
        shell=True,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
    )
    assert (
        result.stdout
        == "ran --multirun a=1 b=1,2 hydra.job.name=train "
        + (result.stdout.split("hydra.job.name=train ", 1)[1])
    )
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr
    assert "train: 3 commands: 3 finished; 6 runs" in result.stderr
    assert len(recorded(folder)) == 3


def test_a_pipe_over_the_size_limit_is_a_located_error_not_a_crash(project: Project) -> None:
    folder = project(
        "jobs:\n  p:\n    run: python record.py\n    sets:\n      - each: a=1:999999999|b=1\n"
    )
    located = "jobs.p.sets[0].each: too many values in 'a=1:999999999|b=1'"
    for args in (["show", "p"], ["run", "p", "--dry-run"]):
        result = run_cli(*args, cwd=folder)
        assert result.returncode == 2, args
        assert result.stderr.startswith(f"Error: hydraflow.yaml: {located}")
    # The listing names the broken job with its error, as it does any invalid job.
    listing = run_cli("show", cwd=folder)
    assert listing.returncode == 2
    assert listing.stdout.startswith(f"p  invalid    {located}")
    assert "Traceback" not in listing.stderr


def test_a_dry_run_masks_passwords_as_the_real_run_does(project: Project) -> None:
    """A dry run printed `db.password=` and `user:pass@` as typed; the real
    run's failure line masked them. Keys the app marks `secrets=` are not
    known to the CLI, so only URIs and keys named as passwords are masked."""
    folder = project(JOBS)
    typed = [
        "+db.password=s3cret-pw",
        "+api.token_secret=s3cret-pw a",
        "uri=http://u:s3cret-pw@h/x",
    ]
    for job in ("train", "sweep"):
        result = run_cli("run", job, *typed, "--dry-run", cwd=folder)
        assert result.returncode == 0
        assert "s3cret-pw" not in result.stdout
        last = result.stdout.splitlines()[-1]
        assert "+db.password=*** '+api.token_secret=***' uri=http://u:***@h/x" in last
    failing = run_cli("run", "train", typed[0], "--", "--fail-if", "a=1:3", cwd=folder)
    assert failing.returncode == 3
    assert "+db.password=*** " in failing.stderr
    assert "s3cret-pw" not in failing.stderr


def test_a_failed_command_is_named_with_its_passwords_masked(project: Project) -> None:
    folder = project(
        "jobs:\n  t:\n    run: python record.py --fail-if a=1:3\n"
        "    add: uri=http://alice:s3cret-pw@db.example:5000\n    sets:\n      - each: a=1\n"
    )
    result = run_cli("run", "t", cwd=folder)
    assert result.returncode == 3
    assert "failed with status 3: python record.py --fail-if a=1:3" in result.stderr
    assert "uri=http://alice:***@db.example:5000" in result.stderr
    assert "s3cret-pw" not in result.stderr


def test_hydraflows_option_after_dashes_is_the_programs_and_said_so(project: Project) -> None:
    folder = project(JOBS)
    result = run_cli("run", "train", "--dry-run", "--", "-j", "2", cwd=folder)
    assert result.returncode == 0
    assert "warning: -j comes after '--', so it goes to the program" in result.stderr
    assert " -j 2 --multirun " in result.stdout.splitlines()[0]
