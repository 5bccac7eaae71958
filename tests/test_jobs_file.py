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
    assert "no job named 'tran'; did you mean 'train'? The jobs are: train, test" in result.stderr
    unlike = run_cli("show", "xyz", cwd=folder)
    assert unlike.returncode == 2
    assert unlike.stderr == "Error: hydraflow.yaml: no job named 'xyz'; the jobs are: train, test\n"


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
    for jobs, where in (
        ("  j:\n    name: runs/a\n", "jobs.j.name"),
        ("  runs/a:\n", "jobs.runs/a"),
    ):
        folder = project(f"jobs:\n{jobs}    run: python record.py\n")
        job = "j" if "name:" in jobs else "runs/a"
        result = run_cli("run", job, cwd=folder)
        assert result.returncode == 2
        assert f"{where}: 'runs/a' must not contain '/'" in result.stderr
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


def test_a_key_given_twice_is_refused_where_it_is(project: Callable[[str], Path]) -> None:
    """PyYAML keeps the last of two equal keys: the set's first `each` was
    dropped, and the sweep ran over `optimizer` alone, exit 0."""
    folder = project(
        """
        jobs:
          a:
            run: python record.py
            sets:
              - each: model=mlp,cnn
                all: seed=1:3
                each: optimizer=sgd,adam
          b:
            run: python record.py
        """
    )
    result = run_cli("run", "a", "--dry-run", cwd=folder)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.a.sets[0]: duplicate key 'each' on line 8 "
        "(first on line 6); YAML would keep only the last\n"
    )
    assert run_cli("run", "b", cwd=folder).returncode == 0
    assert len(recorded(folder)) == 1


def test_a_job_given_twice_is_refused_and_the_others_still_run(
    project: Callable[[str], Path],
) -> None:
    """The last `a:` silently replaced the first, and `show` listed one. A
    YAML merge (`<<: *base`) is no duplicate: a job's own key overrides it."""
    folder = project(
        """
        jobs:
          a:
            run: python record.py
            sets:
              - each: model=mlp,cnn
          base: &base
            run: python record.py
            add: x=1
          merged:
            <<: *base
            add: x=2
          a:
            run: python other.py
        """
    )
    shown = run_cli("show", cwd=folder)
    assert shown.returncode == 2
    assert shown.stdout.splitlines() == [
        "a       invalid             jobs: duplicate key 'a' on line 13 (first on line 3);"
        " YAML would keep only the last",
        "base    run      1 command  1 run",
        "merged  run      1 command  1 run",
    ]
    result = run_cli("run", "a", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs: duplicate key 'a' on line 13 (first on line 3); "
        "YAML would keep only the last\n"
    )
    assert run_cli("run", "merged", cwd=folder).returncode == 0
    [args] = recorded(folder)
    assert "x=2" in args
    assert "x=1" not in args


def test_a_key_given_twice_on_one_line_is_named_so(project: Callable[[str], Path]) -> None:
    folder = project(
        f"jobs:\n  j:\n    {GOOD_COMMAND}\n    stopping: {{rule: median, rule: none}}\n"
    )
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.j.stopping: duplicate key 'rule' on line 4 "
        "(twice on that line); YAML would keep only the last\n"
    )


def test_a_top_level_key_given_twice_refuses_the_file(project: Callable[[str], Path]) -> None:
    folder = project("jobs:\n  a:\n    run: python record.py\njobs:\n  b:\n    run: b\n")
    result = run_cli("run", "b", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: duplicate key 'jobs' on line 4 (first on line 1); "
        "YAML would keep only the last\n"
    )


@pytest.mark.parametrize(
    ("sets_yaml", "message"),
    [
        (
            "    sets:\n      -\n",
            "jobs.j.sets[0]: an empty item; write {} for a command without parameters",
        ),
        (
            "    sets:\n      - each: a=1,2\n      -\n",
            "jobs.j.sets[1]: an empty item; write {} for a command without parameters",
        ),
        (
            "    sets:\n      # - each: a=1,2\n",
            "jobs.j.sets: is empty; leave sets out to run the command once",
        ),
    ],
)
def test_an_empty_set_is_refused_and_braces_run_once(
    project: Callable[[str], Path], sets_yaml: str, message: str
) -> None:
    """A bare `-` (or `sets:` whose items are commented out) ran the command
    once without parameters, silently; `{}` says so on purpose."""
    folder = project(f"jobs:\n  j:\n    {GOOD_COMMAND}\n{sets_yaml}")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == f"Error: hydraflow.yaml: {message}\n"
    assert recorded(folder) == []
    fixed = sets_yaml.replace("-\n", "- {}\n").replace("sets:\n      #", "#")
    folder = project(f"jobs:\n  j:\n    {GOOD_COMMAND}\n{fixed}")
    assert run_cli("run", "j", cwd=folder).returncode == 0
    assert [args[-1] for args in recorded(folder)][-1].startswith("hydra.sweep.dir=")


@pytest.mark.parametrize(
    ("job_yaml", "message"),
    [
        ("    sets:\n      - each:\n        all: a=1,2\n", "jobs.j.sets[0].each: is empty"),
        ("    sets:\n      - all:\n", "jobs.j.sets[0].all: is empty"),
        ("    add:\n", "jobs.j.add: is empty"),
    ],
)
def test_an_empty_each_all_or_add_is_refused(
    project: Callable[[str], Path], job_yaml: str, message: str
) -> None:
    """`each:` with its values commented out meant no arguments, silently:
    a different sweep from the one written."""
    folder = project(f"jobs:\n  j:\n    {GOOD_COMMAND}\n{job_yaml}")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    key = message.rpartition(".")[2].split(":")[0]
    assert result.stderr == (
        f"Error: hydraflow.yaml: {message}; give it arguments, or leave {key} out\n"
    )
    assert recorded(folder) == []


GRID = """
jobs:
  grid:
    run: python record.py
    sets:
      - each: seed=1,2
      - each: model=a
"""


def test_a_key_given_twice_on_the_command_line_is_refused(
    project: Callable[[str], Path],
) -> None:
    """`seed=1 seed=2` kept seed=2 where the set has seed, and gave both
    where it has not: two different sweeps, silently. `~seed +seed=3`
    (delete, then add) is one assignment, as to Hydra; `db` and `db.user`
    are different keys."""
    folder = project(GRID)
    for args, key, shown in [
        (("seed=1", "seed=2"), "seed", "seed=1 and seed=2"),
        (("+seed=1", "seed=2"), "seed", "+seed=1 and seed=2"),
        (("seed=1", "++seed=2"), "seed", "seed=1 and ++seed=2"),
        (("lr/m=1", "width=3", "lr=0.5"), "lr", "lr/m=1 and lr=0.5"),
    ]:
        result = run_cli("run", "grid", *args, cwd=folder)
        assert result.returncode == 2
        assert result.stderr == (
            f"Error: command line: '{key}' is given twice ({shown}); give it once "
            f"(one argument sweeps several values: {key}=a,b)\n"
        )
    assert recorded(folder) == []
    one_each = ("~seed", "+seed=3", "db=x", "db.user=y")
    result = run_cli("run", "grid", *one_each, "--dry-run", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "model=a '~seed' +seed=3 db=x db.user=y hydra.job.name=grid" in result.stdout


def test_a_missing_jobs_file_names_one_of_a_close_name(tmp_path: Path) -> None:
    jobs = f"jobs:\n  j:\n    {GOOD_COMMAND}\n"
    for present, named, message in [
        (
            "hydraflow.yml",
            (),
            "hydraflow.yaml: no such file, but hydraflow.yml is there (use -c hydraflow.yml)",
        ),
        (
            "hydraflow.yaml",
            ("-c", "hydraflo.yaml"),
            "hydraflo.yaml: no such file, but hydraflow.yaml is there (use -c hydraflow.yaml)",
        ),
        ("other.yaml", (), "hydraflow.yaml: no such file (use -c FILE to name another)"),
    ]:
        for old in tmp_path.iterdir():
            old.unlink()
        (tmp_path / present).write_text(jobs)
        result = run_cli("run", "j", *named, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"Error: {message}\n"


def test_a_value_ending_in_a_colon_is_told_to_be_quoted(project: Callable[[str], Path]) -> None:
    for set_yaml, message in [
        (
            "      - each: seed=1:\n",
            "line 5, column 21: invalid YAML: mapping values are not allowed here"
            " (quote the value: 'seed=1:')",
        ),
        (
            "      - each:\n          - seed=1:\n",
            "jobs.j.sets[0].each[0]: must be a string, not dict (quote it: 'seed=1:')",
        ),
        (  # no `=`: not a value of the grammar, so no guess
            "      - each: seed: 1\n",
            "line 5, column 19: invalid YAML: mapping values are not allowed here",
        ),
    ]:
        folder = project(f"jobs:\n  j:\n    {GOOD_COMMAND}\n    sets:\n{set_yaml}")
        result = run_cli("run", "j", cwd=folder)
        assert result.returncode == 2
        assert result.stderr == f"Error: hydraflow.yaml: {message}\n"
