"""The published HydraFlow's jobs files work unchanged: the same commands.

tests/fixtures/published_jobs/hydraflow.yaml uses what the published tool
reads there: OmegaConf's `${...}` (other jobs' fields, `oc.env`, relative
keys, `\\${...}` for a literal), explicit `''` fields, and arguments quoted
whole as a shell quotes them. `shown.yaml` beside it is what the published
`hydraflow show` printed for that file (every field, `call: ''` included).

PUBLISHED is what the published hydraflow 0.23.2 (CPython 3.13) printed on
2026-12-08 for `W=9 hydraflow run JOB --dry-run` in a folder holding either
file (the same for both), its sweep dirs' ULIDs put as `<ulid>`; not edited by
hand. With /work/published/.venv present, `test_the_record_is_the_published_tools`
measures it again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import HYDRAFLOW, run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "published_jobs"
PUBLISHED_HYDRAFLOW = Path("/work/published/.venv/bin/hydraflow")
ULID = re.compile(r"multirun/[0-9A-HJKMNP-TV-Z]{26}")

# ruff: noqa: E501
PUBLISHED = {
    "derived": [
        "python app.py --multirun width=9 hydra.job.name=derived hydra.sweep.dir=multirun/<ulid> scale=2 lr=0.5",
    ],
    "borrowed_sets": [
        "python app.py --fast --multirun hydra.job.name=exp_9 hydra.sweep.dir=multirun/<ulid> scale=2 lr=0.5 seed=1 q=1",
        "python app.py --fast --multirun q=1 p=1 hydra.job.name=exp_9 hydra.sweep.dir=multirun/<ulid> scale=2 lr=0.5 seed=1",
        "python app.py --fast --multirun q=1 p=2 hydra.job.name=exp_9 hydra.sweep.dir=multirun/<ulid> scale=2 lr=0.5 seed=1",
    ],
    "missing_field": [
        "python app.py --multirun hydra.job.name=missing_field hydra.sweep.dir=multirun/<ulid> +note=width=100",
    ],
    "escaped": [
        "python app.py --multirun 'a=${x}' hydra.job.name=escaped hydra.sweep.dir=multirun/<ulid> '+note=${model.name}' '+tag=${hydra:job.num}'",
    ],
    "empty_strings": [
        "python app.py --multirun x=1,2 hydra.job.name=empty_strings hydra.sweep.dir=multirun/<ulid>",
        "python app.py --multirun y=1 hydra.job.name=empty_strings hydra.sweep.dir=multirun/<ulid>",
    ],
    "quoted": [
        "python app.py --multirun 'model.name=hello world' width=1 hydra.job.name=quoted hydra.sweep.dir=multirun/<ulid> '+note=a b'",
        "python app.py --multirun 'model.name=hello world' width=2 hydra.job.name=quoted hydra.sweep.dir=multirun/<ulid> '+note=a b'",
        "python app.py --multirun 'model.name=big model' size=1,2 hydra.job.name=quoted hydra.sweep.dir=multirun/<ulid> '+note=a b'",
    ],
}


# Ours differ on purpose in one place: `${oc.env:...}` in each/all/add goes on
# to Hydra as written (the app gets the same value), so a secret read from the
# environment is never on a command line nor recorded as its value.
OURS = PUBLISHED | {
    "derived": [
        "python app.py --multirun 'width=${oc.env:W,7}' hydra.job.name=derived hydra.sweep.dir=multirun/<ulid> scale=2 lr=0.5",
    ],
}


def dry_run(command: list[str], folder: Path, job: str) -> list[str]:
    env = {**os.environ, "W": "9"}
    result = subprocess.run(
        [*command, "run", job, "--dry-run"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return [ULID.sub("multirun/<ulid>", line) for line in result.stdout.splitlines()]


@pytest.fixture(params=["hydraflow.yaml", "shown.yaml"])
def published_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / request.param, tmp_path / "hydraflow.yaml")
    return tmp_path


@pytest.mark.parametrize("job", PUBLISHED)
def test_a_published_jobs_file_makes_the_same_commands(published_file: Path, job: str) -> None:
    assert dry_run([HYDRAFLOW], published_file, job) == OURS[job]


@pytest.mark.skipif(not PUBLISHED_HYDRAFLOW.exists(), reason="the published hydraflow is not here")
def test_the_record_is_the_published_tools(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "hydraflow.yaml", tmp_path / "hydraflow.yaml")
    for job, lines in PUBLISHED.items():
        assert dry_run([str(PUBLISHED_HYDRAFLOW)], tmp_path, job) == lines


def test_a_value_read_from_the_environment_never_reaches_the_command_line(
    tmp_path: Path,
) -> None:
    """The app resolves `${oc.env:...}` itself, as Hydra passes it on: it
    gets the value, and its run records the text (read with MLflow's client)."""
    (tmp_path / "hydraflow.yaml").write_text(
        "jobs:\n  j:\n    run: python app.py\n    add: api_key=${oc.env:API_KEY}\n"
        "    sets:\n      - each: width=${oc.env:W,7}\n    name: j_${oc.env:W,7}\n"
    )
    (tmp_path / "app.py").write_text(
        "import hydraflow\n"
        "@hydraflow.main({'width': 1, 'api_key': ''})\n"
        "def app(cfg):\n"
        "    print('app got', cfg.width, cfg.api_key == 'sk-secret-42')\n"
        "if __name__ == '__main__':\n"
        "    app()\n"
    )
    env = {
        **os.environ,
        "API_KEY": "sk-secret-42",
        "W": "9",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    shown = subprocess.run(
        [HYDRAFLOW, "run", "j", "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert "sk-secret-42" not in shown.stdout + shown.stderr
    assert "'api_key=${oc.env:API_KEY}'" in shown.stdout
    assert "hydra.job.name=j_9 " in shown.stdout  # resolved outside each/all/add
    ran = subprocess.run(
        [HYDRAFLOW, "run", "j"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    assert "app got 9 True" in ran.stdout
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("j_9").experiment_id])
    assert run.data.params == {"width": "${oc.env:W,7}", "api_key": "${oc.env:API_KEY}"}
    assert b"sk-secret-42" not in (tmp_path / "mlflow.db").read_bytes()


UNRESOLVABLE = """\
jobs:
  good:
    run: python app.py
  typo:
    run: python app.py
    sets:
      - each: a=1
        add: +note=${jobs.god.run}
  for_hydra:
    run: python app.py
    add: +n=${hydra:job.num}
  unclosed:
    run: python app.py ${oc.env:HOME
"""


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            "typo",
            "hydraflow.yaml:8: jobs.typo.sets[0].add: cannot resolve '+note=${jobs.god.run}': "
            "Interpolation key 'jobs.god.run' not found",
        ),
        (
            "for_hydra",
            "hydraflow.yaml:11: jobs.for_hydra.add: cannot resolve '+n=${hydra:job.num}': "
            "Unsupported interpolation type hydra",
        ),
        (
            "unclosed",
            "hydraflow.yaml:13: jobs.unclosed.run: cannot resolve 'python app.py ${oc.env:HOME': ",
        ),
    ],
)
def test_a_failed_interpolation_is_one_located_line_and_its_job_alone_fails(
    project: Callable[[str], Path], job: str, message: str
) -> None:
    """The published tool failed with OmegaConf's traceback (for `${oc.env:HOME`,
    the whole file); here the job is named with its line, exit 2, and the
    file's other jobs run."""
    folder = project(UNRESOLVABLE)
    result = run_cli("run", job, "--dry-run", cwd=folder)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.endswith(r"(to pass a ${...} on as written, write \${...})" + "\n")
    assert result.stderr.count("\n") == 1
    assert run_cli("run", "good", "--dry-run", cwd=folder).returncode == 0


def test_a_bare_each_stays_a_slip_where_an_explicit_empty_string_is_left_out(
    project: Callable[[str], Path],
) -> None:
    jobs = (
        "jobs:\n  j:\n    run: python app.py\n    sets:\n      - each: {each}\n        all: a=1,2\n"
    )
    folder = project(jobs.format(each="''"))
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python app.py --multirun a=1,2 hydra.job.name=j ")
    folder = project(jobs.format(each=""))
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 2
    assert "jobs.j.sets[0].each: is empty; give it arguments, or leave each out" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "lr=log(0.0001:0.1:10)",
            "unknown function in 'lr=log(0.0001:0.1:10)': 'log' is not one of Hydra's sweep "
            "functions: for values a factor apart write a geometric range, START:STOP:*FACTOR "
            "(here 0.0001:0.1:*10)",
        ),
        ("seed: 1", "invalid argument in 'seed:': did you mean seed=1?"),
        ("seed:1", "invalid argument in 'seed:1': did you mean seed=1?"),
        (
            "'hello world'",
            "invalid argument in ''hello world'': expected KEY=VALUES (or ~KEY) inside the "
            "quotes, e.g. 'KEY=hello world'",
        ),
    ],
)
@pytest.mark.parametrize("field", ["each", "all"])
def test_near_misses_say_what_was_meant(
    project: Callable[[str], Path], field: str, value: str, message: str
) -> None:
    folder = project(
        f'jobs:\n  j:\n    run: python app.py\n    sets:\n      - {field}: "{value}"\n'
    )
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: hydraflow.yaml: jobs.j.sets[0].{field}: {message}")


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (
            "  lr=1:\n    run: python app.py\n",
            "jobs.lr=1: 'lr=1' cannot be Hydra's job name: Hydra's parser refuses '=' in "
            "hydra.job.name=lr=1; give the job a name (name: NAME) Hydra reads",
        ),
        (
            "  j:\n    name: a,b\n    run: python app.py\n",
            "jobs.j.name: 'a,b' cannot be Hydra's job name: Hydra's parser refuses ',' in "
            "hydra.job.name=a,b",
        ),
    ],
)
def test_a_job_name_hydra_cannot_read_is_refused(
    project: Callable[[str], Path], jobs: str, message: str
) -> None:
    """`hydraflow show` passed it, and every command failed in Hydra's parser."""
    folder = project(f"jobs:\n{jobs}")
    result = run_cli("show", cwd=folder)
    assert result.returncode == 2
    assert message in result.stdout
    key = jobs.split(":")[0].strip()
    assert result.stderr == f"Error: hydraflow.yaml: invalid job: {key}\n"


def test_a_job_name_hydra_reads_passes(project: Callable[[str], Path]) -> None:
    """The characters Hydra's parser takes in a value, as checked against it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = "exp 1.x@%+:?*|-_$"
    assert OverridesParser.create().parse_override(f"hydra.job.name={name}").value() == name
    folder = project(f"jobs:\n  j:\n    name: '{name}'\n    run: python app.py\n")
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert f"'hydra.job.name={name}'" in result.stdout


def test_the_characters_refused_in_a_job_name_are_those_hydra_refuses() -> None:
    import string

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydraflow.runner.jobs import hydra_reads_unquoted

    parser = OverridesParser.create()

    def hydra_reads(char: str) -> bool:
        try:
            return parser.parse_override(f"hydra.job.name=a{char}b").value() == f"a{char}b"
        except Exception:
            return False

    for char in [*string.printable.strip(), " ", "\t", "\x7f", "\x01", "é", "実"]:
        assert hydra_reads_unquoted(char) == hydra_reads(char), char


def test_our_show_read_back_as_a_jobs_file_makes_the_same_commands(tmp_path: Path) -> None:
    """`hydraflow show JOB` prints the job resolved; a `${...}` left in it is
    literal text there, written `\\${...}`, so the output means the same."""
    shutil.copy(FIXTURES / "hydraflow.yaml", tmp_path / "hydraflow.yaml")
    shown = tmp_path / "shown"
    shown.mkdir()
    for job, lines in OURS.items():
        result = subprocess.run(
            [HYDRAFLOW, "show", job],
            cwd=tmp_path,
            env={**os.environ, "W": "9"},
            capture_output=True,
            text=True,
            check=True,
        )
        body = "".join(f"  {line}\n" for line in result.stdout.splitlines())
        (shown / "hydraflow.yaml").write_text(f"jobs:\n{body}")
        assert dry_run([HYDRAFLOW], shown, job) == lines


def test_a_whole_job_or_a_number_may_be_interpolated_beside_any_yaml_key(
    project: Callable[[str], Path],
) -> None:
    """A job given as `${jobs.base}`, a stopping rule's number from
    `oc.decode`, in a file whose keys OmegaConf would refuse (null, a date)."""
    folder = project(
        "jobs:\n"
        "  base:\n    run: python app.py\n    sets: [{each: a=1}]\n"
        "  whole: ${jobs.base}\n"
        "  ~:\n    run: python app.py\n"
        "  2026-01-01:\n    run: python app.py\n"
        "  d:\n    run: python app.py\n    stopping: {min_runs: \"${oc.decode:'5'}\"}\n"
    )
    result = run_cli("run", "whole", "--dry-run", cwd=folder)
    assert result.stdout.startswith("python app.py --multirun a=1 hydra.job.name=whole "), result
    result = run_cli("show", "d", cwd=folder)
    assert "    min_runs: 5\n" in result.stdout, result


def test_a_key_given_twice_names_the_set_add_quoted_whole(project: Callable[[str], Path]) -> None:
    folder = project(
        "jobs:\n  j:\n    run: python app.py\n    sets:\n      - each: x=2\n        add: \"'x=1'\"\n"
    )
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.j.sets[0].add: 'x' is given also in jobs.j.sets[0].each; "
        "Hydra would keep only its last value\n"
    )
