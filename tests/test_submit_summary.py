"""What `hydraflow run` says about a submit job whose handler did not wait
for the runs, or failed, and what it checks in a `hydraflow slurm` line
before anything runs (no cluster needed: the handler here is a script, or
never starts)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.conftest import run_cli

# A handler that submits (to nothing) and says it does not wait, as
# `hydraflow slurm --no-wait` does.
NOT_WAITING = """
import sys
from hydraflow.protocol import submitted_not_waited
print("submitted", sys.argv[-1])
submitted_not_waited("4242")
"""

FAILING = """
import sys
print("the scheduler refused", file=sys.stderr)
sys.exit(3)
"""


def write_job(folder: Path, handler: str, submit: str | None = None) -> Path:
    (folder / "handler.py").write_text(handler)
    line = submit or f"{sys.executable} handler.py app.py"
    jobs = f"""
        jobs:
          s:
            submit: {line}
            sets:
              - each: i=0,1,2
                all: j=0,1
    """
    (folder / "hydraflow.yaml").write_text(textwrap.dedent(jobs))
    return folder


def test_a_handler_that_does_not_wait_is_reported_as_such(tmp_path: Path) -> None:
    folder = write_job(tmp_path, NOT_WAITING)

    result = run_cli("run", "s", cwd=folder)

    assert result.returncode == 0, result.stderr
    assert "s: 3 commands: 3 submitted, not waited for; 6 runs: 6 not waited for" in result.stderr
    assert (
        "the handler submitted 3 commands (job 4242) and returned without waiting for their runs"
        in result.stderr
    )
    assert "3 commands submitted by" in result.stderr and "returned, not waiting for them" in (
        result.stderr
    )
    assert "not reported" not in result.stderr
    assert "does the handler wait" not in result.stderr
    assert "finished" not in result.stderr.replace("skips the finished runs", "")


def test_a_failed_handler_is_named_once_and_its_removed_file_never(tmp_path: Path) -> None:
    folder = write_job(tmp_path, FAILING)

    result = run_cli("run", "s", cwd=folder)

    assert result.returncode == 3
    assert "the scheduler refused" in result.stderr
    assert result.stderr.count("handler.py app.py") == 1, result.stderr
    assert "hydraflow-submit-" not in result.stderr
    assert "s: 3 commands: 3 submitted by a handler that failed with status 3" in result.stderr


MISTAKES = {
    "hydraflow slurm --partition debug": "expected `-- PROGRAM [ARGS]...` after its options",
    "hydraflow slurm --partition debug --": "expected `-- PROGRAM [ARGS]...` after its options",
    "hydraflow slurm --arr=1-3 -- python app.py": "--arr=1-3 (sbatch reads --array)",
    "hydraflow slurm -Ho x.log -- python app.py": "-Ho (sbatch reads -o)",
    "hydraflow slurm --max-parallel 0 -- python app.py": "0 is not in the range x>=1",
    f"{sys.executable} -m hydraflow slurm -o x.log -- python app.py": "sbatch option -o:",
}


def test_a_mistake_in_a_hydraflow_slurm_line_is_found_before_anything_runs(
    tmp_path: Path,
) -> None:
    """By `hydraflow show` and `--dry-run` too: one line naming the file and
    the job, nothing written, no handler started."""
    for submit, message in MISTAKES.items():
        folder = write_job(tmp_path, FAILING, submit)
        where = "Error: hydraflow.yaml: jobs.s.submit: hydraflow slurm: "
        for args in (("show", "s"), ("run", "s", "--dry-run"), ("run", "s")):
            result = run_cli(*args, cwd=folder)
            assert result.returncode == 2, (submit, args, result.stderr)
            assert result.stderr.startswith(where), (submit, args, result.stderr)
            assert message in result.stderr, (submit, result.stderr)
            assert len(result.stderr.splitlines()) == 1, result.stderr
        listing = run_cli("show", cwd=folder)
        assert "jobs.s.submit: hydraflow slurm: " in listing.stdout
        assert message in listing.stdout
        assert not list(folder.glob("hydraflow-submit-*"))
        assert not (folder / "multirun").exists()


def test_a_good_hydraflow_slurm_line_passes_the_check(tmp_path: Path) -> None:
    submit = "hydraflow slurm --partition debug --time=01:00 --no-wait -- python app.py '$x'"
    folder = write_job(tmp_path, FAILING, submit)

    result = run_cli("show", "s", cwd=folder)

    assert result.returncode == 0, result.stderr
    assert "# 3 commands, 6 runs" in result.stdout
