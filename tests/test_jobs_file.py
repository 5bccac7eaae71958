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
