"""Resuming a sweep: what a command that already finished costs on a re-run.

1. The tutorial's `job_sequential` (2 commands, 6 runs): the first run, then
   a re-run of the finished job.
2. A 200-command job (one run per command) of which 190 finished: the first
   run of all 200 (with -j 2), 10 runs deleted, then the re-run, which must
   run those 10 again and skip the 190.

For the tutorial the cost of a finished command is the re-run's time over
its commands; for the 200-command job, the re-run's whole time over the 190
finished commands bounds it from above. Target: at most 0.5 s, including its
process start, if it has one.

Run: .venv/bin/python benches/bench_resume.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import apps_environment, hydraflow_app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent
TARGET_SECONDS = 0.5

APP = hydraflow_app("a")


def hydraflow(folder: Path, *args: str) -> float:
    """Runs `hydraflow ARGS` in `folder`; returns the wall time in seconds."""
    env = apps_environment()
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "hydraflow"), *args], cwd=folder, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"hydraflow {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def tutorial(root: Path) -> None:
    folder = root / "tutorial"
    folder.mkdir()
    for name in ("example.py", "hydraflow.yaml", "submit.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    first = hydraflow(folder, "run", "job_sequential")
    again = hydraflow(folder, "run", "job_sequential")
    print("job_sequential (2 commands, 6 runs)")
    print(f"  first run            {first:7.2f} s")
    print(
        f"  re-run, all finished {again:7.2f} s = {again / 2:.3f} s per command "
        f"({again / first:.3f}x the first run; target <= {TARGET_SECONDS} s per command)"
    )


def partly_finished(root: Path, commands: int = 200, unfinished: int = 10) -> None:
    from hydraflow import load

    folder = root / "partial"
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP))
    jobs = f"jobs:\n  sweep:\n    run: python app.py\n    sets:\n      - each: a=1:{commands}\n"
    (folder / "hydraflow.yaml").write_text(jobs)
    first = hydraflow(folder, "run", "sweep", "-j", "2")
    runs = load("sweep", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    deleted = delete_runs(folder, [run.run_id for run in list(runs)[:unfinished]])
    again = hydraflow(folder, "run", "sweep")
    finished = commands - deleted
    # An upper bound that needs no estimate of what the 10 commands cost: the
    # whole re-run, as if those commands had been free.
    bound = again / finished
    print(f"sweep ({commands} commands, {deleted} of them unfinished)")
    print(f"  first run (-j 2)     {first:7.2f} s")
    print(f"  re-run               {again:7.2f} s ({again / first:.3f}x the first run)")
    print(f"  per finished command <= {bound:.3f} s (target <= {TARGET_SECONDS} s)")


def delete_runs(folder: Path, run_ids: list[str]) -> int:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    for run_id in run_ids:
        client.delete_run(run_id)
    return len(run_ids)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        tutorial(Path(root))
        partly_finished(Path(root))


if __name__ == "__main__":
    main()
