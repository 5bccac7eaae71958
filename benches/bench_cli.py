"""Benchmarks of the CLI: a dry run of a million commands, and `--help`.

Run: make bench   (or: python benches/bench_cli.py)

Wall time is the best of several runs of the installed `hydraflow` command in
a subprocess; peak memory is the child's maximum resident set size. The
children may write bytecode caches (PYTHONDONTWRITEBYTECODE is dropped), as
Python does on a user's machine: otherwise every start compiles hydraflow's
modules anew.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HYDRAFLOW = str(Path(sys.executable).parent / "hydraflow")
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

JOBS = """\
jobs:
  grid:
    run: python app.py
    sets:
      - each: a=1:1000 b=1:1000
        all: c=1:3
"""


# Runs the CLI in a fresh interpreter and reports that process's own peak RSS
# (a forked child would count its parent's memory from before the exec).
MEASURED = """
import resource, sys
from hydraflow.cli import cli
try:
    cli(sys.argv[1:], prog_name="hydraflow")
except SystemExit as exit:
    assert not exit.code, exit.code
sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def timed(args: list[str], cwd: str, repeat: int) -> float:
    """Best wall time in seconds of the installed command over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            [HYDRAFLOW, *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            check=True,
            stderr=subprocess.DEVNULL,
            env=ENVIRONMENT,
        )
        best = min(best, time.perf_counter() - start)
    return best


def peak_megabytes(args: list[str], cwd: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENVIRONMENT,
    )
    return float(result.stderr.splitlines()[-1])


def count_lines(args: list[str], cwd: str) -> int:
    with subprocess.Popen(
        [HYDRAFLOW, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=ENVIRONMENT,
    ) as child:
        assert child.stdout is not None
        return sum(chunk.count(b"\n") for chunk in iter(lambda: child.stdout.read(1 << 20), b""))


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "hydraflow.yaml").write_text(JOBS)
        dry_run = ["run", "grid", "--dry-run"]
        assert count_lines(dry_run, folder) == 10**6
        dry = timed(dry_run, folder, 3)
        dry_peak = peak_megabytes(dry_run, folder)
        help_time = timed(["--help"], folder, 10)
    results = [
        (
            "dry run of 10^6 commands",
            f"{dry:.2f} s, peak {dry_peak:.0f} MB",
            "<= 2 s, <= 150 MB",
            dry <= 2 and dry_peak <= 150,
        ),
        ("hydraflow --help", f"{help_time * 1e3:.0f} ms", "<= 100 ms", help_time <= 0.1),
    ]
    for name, measured, target, met in results:
        print(f"{name:<28} {measured:<24} target {target:<18} {'ok' if met else 'MISSED'}")
    return 0 if all(r[-1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
