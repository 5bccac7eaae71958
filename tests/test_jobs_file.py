"""Bad jobs files: every mistake is named by file, job, set and key, exits 2,
and nothing runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import recorded, run_cli

GOOD_COMMAND = "run: python record.py"


@pytest.mark.parametrize(
    ("jobs_yaml", "message"),
    [
        (
            "jobs:\n  j:\n    runn: x\n",
            "hydraflow.yaml: jobs.j.runn: unknown key 'runn'; did you mean 'run'?",
        ),
        (
            "jobs:\n  j:\n    add: x=1\n",
            "jobs.j: a job needs exactly one of run, call or submit (found none)",
        ),
        (
            "jobs:\n  j:\n    run: a\n    call: b.c\n",
            "exactly one of run, call or submit (found run and call)",
        ),
        (f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets: each\n", "jobs.j.sets: must be a list"),
        (
            f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets:\n      - eachh: a=1\n",
            "jobs.j.sets[0].eachh: unknown key 'eachh'; did you mean 'each'?",
        ),
        (
            f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets:\n      - each: 5\n",
            "jobs.j.sets[0].each: must be a string or a list of strings, not int",
        ),
        (
            f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets:\n      - all: [a=1, 2]\n",
            "jobs.j.sets[0].all[1]: must be a string, not int",
        ),
        ("jobs:\n  j:\n    run: 3\n", "jobs.j.run: must be a non-empty string"),
        ("jobz:\n  j:\n    run: x\n", "unknown key 'jobz'; did you mean 'jobs'?"),
        ("", "the file is empty"),
        ("jobs:\n  j: [1\n", "hydraflow.yaml: line 3, column 1: invalid YAML"),
        ("jobs:\n  j: just text\n", "jobs.j: a job must be a mapping"),
        (
            f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets: []\n",
            "jobs.j.sets: an empty list runs nothing; leave sets out to run the command once",
        ),
    ],
)
def test_bad_files_are_named_precisely(
    project: Callable[[str], Path], jobs_yaml: str, message: str
) -> None:
    folder = project(jobs_yaml)
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert recorded(folder) == []


def test_grammar_errors_show_the_caret_and_run_nothing(project: Callable[[str], Path]) -> None:
    folder = project(
        """
        jobs:
          j:
            run: python record.py
            sets:
              - each: a=1,2
              - each: b=1
                all: count=1:3tep
        """
    )
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.j.sets[1].all: invalid range in 'count=1:3tep': "
        "'3tep' is not a number\n  count=1:3tep\n          ^^^^\n"
    )
    assert recorded(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == ["hydraflow.yaml", "record.py"]


def test_unbalanced_quotes_are_named(project: Callable[[str], Path]) -> None:
    folder = project("jobs:\n  j:\n    run: python record.py\n    sets:\n      - each: a='1\n")
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 2
    assert "jobs.j.sets[0].each: unbalanced text in 'a='1': the quote ' is never closed" in (
        result.stderr
    )


def test_missing_file_is_named(tmp_path: Path) -> None:
    result = run_cli("run", "j", "-c", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml: no such file" in result.stderr


def test_unknown_job_lists_the_jobs(project: Callable[[str], Path]) -> None:
    folder = project("jobs:\n  train:\n    run: a\n  test:\n    run: b\n")
    result = run_cli("run", "tran", cwd=folder)
    assert result.returncode == 2
    assert "no job named 'tran'; the jobs are: train, test" in result.stderr


def test_bad_override_on_the_command_line(project: Callable[[str], Path]) -> None:
    folder = project("jobs:\n  j:\n    run: python record.py\n")
    result = run_cli("run", "j", "x=5:1", cwd=folder)
    assert result.returncode == 2
    assert "command line: invalid range in 'x=5:1'" in result.stderr
    assert recorded(folder) == []


def test_a_jobs_name_is_its_experiment(project: Callable[[str], Path]) -> None:
    """`name:` as in the published HydraFlow: `hydra.job.name`, so the
    experiment; `hydraflow run` still takes the job's key."""
    folder = project("jobs:\n  train:\n    name: resnet_sweep\n    run: python record.py\n")
    result = run_cli("run", "train", cwd=folder)
    assert result.returncode == 0, result.stderr
    [args] = recorded(folder)
    assert "hydra.job.name=resnet_sweep" in args
    shown = run_cli("show", "train", cwd=folder)
    assert shown.stdout.startswith("train:\n  name: resnet_sweep\n  run: python record.py\n")


def test_a_jobs_name_must_be_text(project: Callable[[str], Path]) -> None:
    folder = project("jobs:\n  j:\n    name: [a]\n    run: python record.py\n")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert "hydraflow.yaml: jobs.j.name: must be a non-empty string" in result.stderr


def test_a_jobs_name_with_a_slash_is_refused_before_hydra_fails(
    project: Callable[[str], Path],
) -> None:
    """Hydra writes each job's log to `<job name>.log`: a '/' made every job
    fail with a traceback from its logging set-up."""
    for jobs in ("  j:\n    name: runs/a\n", "  runs/a:\n"):
        folder = project(f"jobs:\n{jobs}    run: python record.py\n")
        job = "j" if "name:" in jobs else "runs/a"
        result = run_cli("run", job, cwd=folder)
        assert result.returncode == 2
        assert "name: 'runs/a' must not contain '/'" in result.stderr
        assert "Traceback" not in result.stderr
        assert recorded(folder) == []


BROKEN_BESIDE_GOOD = """
jobs:
  good:
    run: python record.py
    sets:
      - each: a=1,2
  typo:
    run: python record.py
    sets:
      - eachh: a=1
  bad_range:
    run: python record.py
    sets:
      - each: a=1:3tep
"""


def test_an_invalid_job_fails_alone_and_the_others_run(project: Callable[[str], Path]) -> None:
    folder = project(BROKEN_BESIDE_GOOD)
    good = run_cli("run", "good", cwd=folder)
    assert good.returncode == 0, good.stderr
    assert len(recorded(folder)) == 2
    for job, message in [
        ("typo", "jobs.typo.sets[0].eachh: unknown key 'eachh'; did you mean 'each'?"),
        ("bad_range", "jobs.bad_range.sets[0].each: invalid range in 'a=1:3tep'"),
    ]:
        for command in (("run", job), ("show", job)):
            result = run_cli(*command, cwd=folder)
            assert result.returncode == 2
            assert f"Error: hydraflow.yaml: {message}" in result.stderr
            assert "Traceback" not in result.stderr
    assert len(recorded(folder)) == 2


def test_show_lists_an_invalid_job_with_its_error(project: Callable[[str], Path]) -> None:
    result = run_cli("show", cwd=project(BROKEN_BESIDE_GOOD))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        "good       run      2 commands  2 runs",
        "typo       invalid              jobs.typo.sets[0].eachh: unknown key 'eachh';"
        " did you mean 'each'?",
        "bad_range  invalid              jobs.bad_range.sets[0].each: invalid range in"
        " 'a=1:3tep': '3tep' is not a number",
    ]
    assert (
        result.stderr == "Error: hydraflow.yaml: invalid jobs (the others work): typo, bad_range\n"
    )
