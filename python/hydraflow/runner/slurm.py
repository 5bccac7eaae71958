"""`hydraflow slurm`: a submit handler that runs a parameter file as one
SLURM job array, one array task per line, and by default waits for it.

    submit: hydraflow slurm --partition debug --max-parallel 8 -- python train.py

hydraflow calls the handler with the parameter file as its last argument.
The array keeps its files in `multirun/slurm-ULID/` of the launch directory:
`params.txt` (a copy: hydraflow removes its own file once the handler
returns), `array.sh` (the submitted script) and, for line N, the task's
output in `task-N.out` and `task-N.err`. Only SLURM's commands are used
(`sbatch`, `scontrol`, `scancel`), so no accounting (`sacct`) is needed.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from hydraflow.errors import HydraflowError, SlurmError
from hydraflow.protocol import EVENTS_ENV, INPUTS_ENV, submitted_not_waited
from hydraflow.runner.commands import SplitAtDashes, after_dashes, fail
from hydraflow.signals import exit_status, handled, ignored, raise_interrupted, signal_of

if TYPE_CHECKING:
    import subprocess

SWEEP_ROOT = "multirun"
JOB_NAME_KEY = "hydra.job.name="
# Options the handler sets itself: a user's value would break the array.
# sbatch takes any unambiguous prefix of a long option (getopt_long): each
# with the shortest that sbatch 22.05 reads as it (`--a`, `--par`, `--wa`
# are ambiguous there: sbatch refuses them itself). `--wait` is our own.
RESERVED_LONG = {"--array": "--ar", "--output": "--ou", "--error": "--er", "--parsable": "--pars"}
RESERVED_SHORT = frozenset("aoeW")
# sbatch's short options that take no argument: in a bundle (`-Ho x.log`)
# the letters after them are options too; after any other, its value.
SHORT_FLAGS = frozenset("hHOQsuvV")
DONE_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
POLL_FIRST, POLL_MAX = 0.5, 5.0
# After Ctrl-C, running tasks get SIGINT (Python's KeyboardInterrupt, so
# @hydraflow.main ends their runs KILLED) and this long before `scancel`
# proper; shorter than `hydraflow run`'s own grace for its children.
CANCEL_GRACE_SECONDS = 20.0
SHOWN_FAILURES = 20
FAILED, INTERRUPTED = 1, 130


@dataclass(frozen=True)
class TaskState:
    task: int
    state: str
    exit_code: int = 0
    signal: int = 0


@dataclass(frozen=True)
class ArrayJob:
    """The array for one parameter file: what runs, where its files go, and how."""

    program: tuple[str, ...]
    lines: tuple[str, ...]
    folder: Path
    sbatch_options: tuple[str, ...] = ()
    max_parallel: int | None = None

    @property
    def tasks(self) -> int:
        return len(self.lines)

    @property
    def params(self) -> Path:
        return self.folder / "params.txt"

    @property
    def script_path(self) -> Path:
        return self.folder / "array.sh"

    def log(self, task: int | str, stream: str) -> Path:
        return self.folder / f"task-{task}.{stream}"

    @property
    def name(self) -> str:
        """The Hydra job name the lines set, else the program's."""
        for word in shlex.split(self.lines[0]):
            if word.startswith(JOB_NAME_KEY):
                return word[len(JOB_NAME_KEY) :]
        return Path(self.program[0]).name

    def sbatch_argv(self) -> list[str]:
        """Ours first, then the user's options (so a user's --job-name wins)."""
        throttle = f"%{self.max_parallel}" if self.max_parallel else ""
        ours = [
            "--parsable",
            f"--array=1-{self.tasks}{throttle}",
            f"--job-name={self.name}",
            f"--output={self.log('%a', 'out')}",
            f"--error={self.log('%a', 'err')}",
        ]
        return ["sbatch", *ours, *self.sbatch_options, str(self.script_path)]

    def script(self) -> str:
        """The program's words go in an array, each single-quoted, never inside
        the double quotes of the `eval` (where bash would expand a `$` in them
        first); only the line, written as shell words, is evaluated."""
        program = shlex.join(self.program)
        return (
            "#!/bin/bash\n"
            f"# Written by `hydraflow slurm`; submitted as:\n"
            f"#   {one_line(shlex.join(self.sbatch_argv()))}\n"
            f"# Array task N runs {one_line(program)} with line N of params.txt as its arguments.\n"
            "set -eu\n"
            f"program=({program})\n"
            f'line=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" {shlex.quote(str(self.params))})\n'
            'eval "exec \\"\\${program[@]}\\" $line"\n'
        )

    def write(self) -> None:
        self.folder.mkdir(parents=True)
        self.params.write_text("".join(line + "\n" for line in self.lines))
        self.script_path.write_text(self.script())


def one_line(text: str) -> str:
    """For a comment: a newline in an argument would end it."""
    return text.replace("\n", "\\n")


def array_job(
    argv: list[str], sbatch_options: tuple[str, ...], max_parallel: int | None
) -> ArrayJob:
    """From `PROGRAM ARGS... PARAMETER_FILE` and the options; raises on bad input."""
    from hydraflow._core import ulid

    if len(argv) < 2:
        raise HydraflowError(
            "expected `-- PROGRAM [ARGS]... PARAMETER_FILE` after the options "
            "(hydraflow adds the parameter file when it calls a submit handler)"
        )
    check_options(sbatch_options)
    *program, parameter_file = argv
    lines = read_lines(Path(parameter_file))
    folder = (Path.cwd() / SWEEP_ROOT / f"slurm-{ulid()}").resolve()
    return ArrayJob(tuple(program), lines, folder, sbatch_options, max_parallel)


def check_options(options: tuple[str, ...]) -> None:
    for option in options:
        reserved = reserved_option(option)
        if reserved is not None:
            meant = "" if option.split("=", 1)[0] == reserved else f" (sbatch reads {reserved})"
            raise HydraflowError(
                f"sbatch option {option}{meant}: hydraflow slurm sets --array, --output, "
                "--error and --parsable itself (use --max-parallel for the array's throttle, "
                "--wait/--no-wait for waiting)"
            )


def reserved_option(option: str) -> str | None:
    """The reserved option sbatch would read `option` as, if any: a long
    option or a prefix it takes for one, or a short one, alone or bundled."""
    if option.startswith("--"):
        name = option.split("=", 1)[0]
        for reserved, shortest in RESERVED_LONG.items():
            if name.startswith(shortest) and reserved.startswith(name):
                return reserved
        return None
    if not option.startswith("-"):
        return None
    for letter in option[1:]:
        if letter in RESERVED_SHORT:
            return f"-{letter}"
        if letter not in SHORT_FLAGS:
            return None  # an option with a value: the rest of the word is the value
    return None


def read_lines(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HydraflowError(f"parameter file {path}: {error.strerror}") from None
    lines = tuple(line for line in text.splitlines() if line.strip())
    if not lines:
        raise HydraflowError(f"parameter file {path}: no lines, so no array tasks")
    return lines


def slurm_command(
    argv: list[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import subprocess  # here, not at the top: `hydraflow --help` stays fast

    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    except FileNotFoundError:
        raise SlurmError(
            f"{argv[0]} not found: run this on a SLURM login node (or install SLURM's client)"
        ) from None


def task_environment(*, reporting: bool) -> dict[str, str]:
    """What sbatch passes to the tasks (--export=ALL, its default): ours,
    without the `hydraflow run` files to report to when nobody will read them."""
    if reporting:
        return dict(os.environ)
    return {k: v for k, v in os.environ.items() if k not in (EVENTS_ENV, INPUTS_ENV)}


def submit(job: ArrayJob, *, reporting: bool = True) -> str:
    """Writes the array's files and submits it; returns the job id. Unless
    `reporting`, the tasks do not report to the `hydraflow run` that called us."""
    import shutil

    job.write()
    try:
        result = slurm_command(job.sbatch_argv(), task_environment(reporting=reporting))
    except SlurmError:
        shutil.rmtree(job.folder)
        raise
    if result.returncode != 0:
        shutil.rmtree(job.folder)  # nothing was submitted: leave nothing behind
        raise SlurmError(f"sbatch failed (status {result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def expand_ids(text: str) -> Iterator[int]:
    """Task ids of scontrol's ArrayTaskId: `7`, or `5-40%4`, `1,3-9:2`."""
    for part in text.split("%", 1)[0].split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        yield from range(int(first), int(last or first) + 1, int(step or 1))


FIELDS = re.compile(r"\bArrayTaskId=(\S+).*?\bJobState=(\S+).*?\bExitCode=(\d+):(\d+)")
# The id scontrol gives the array's record of tasks cancelled before they started.
NO_TASK = "4294967294"


def task_states(job_id: str, tasks: int) -> dict[int, TaskState]:
    """Every task's state, from `scontrol show job`: tasks not yet started
    share one record, and so do tasks cancelled before they started."""
    result = slurm_command(["scontrol", "--oneliner", "show", "job", job_id])
    if result.returncode != 0:
        raise SlurmError(f"scontrol show job {job_id}: {result.stderr.strip()}")
    states: dict[int, TaskState] = {}
    never_started = None
    for record in FIELDS.finditer(result.stdout):
        ids, state, code, signum = record.groups()
        if ids == NO_TASK:
            never_started = state
            continue
        for task in expand_ids(ids):
            states[task] = TaskState(task, state, int(code), int(signum))
    if never_started:
        for task in range(1, tasks + 1):
            states.setdefault(task, TaskState(task, never_started))
    return states


def is_done(job: ArrayJob, states: dict[int, TaskState]) -> bool:
    return len(states) >= job.tasks and all(s.state in DONE_STATES for s in states.values())


def summary(states: dict[int, TaskState]) -> str:
    counts = Counter(s.state.lower() for s in states.values())
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))


def wait(job: ArrayJob, job_id: str, err: TextIO) -> dict[int, TaskState]:
    """Polls until every task is done, printing the counts when they change.
    States seen are kept: the controller forgets a finished task after
    MinJobAge (300 s by default), long before a big array ends."""
    interval, shown = POLL_FIRST, ""
    states: dict[int, TaskState] = {}
    while True:
        states.update(task_states(job_id, job.tasks))
        counts = summary(states)
        if counts != shown:
            err.write(f"hydraflow slurm: job {job_id}: {counts}\n")
            err.flush()
            shown = counts
        if is_done(job, states):
            return states
        time.sleep(interval)
        interval = min(interval * 1.5, POLL_MAX)


def cancel(job: ArrayJob, job_id: str, err: TextIO) -> None:
    """Stops the array: pending tasks never start, running ones get SIGINT and
    a grace period, then `scancel` takes whatever is left."""
    err.write(f"hydraflow slurm: cancelling job {job_id}\n")
    err.flush()
    try:
        slurm_command(["scancel", "--state=PENDING", job_id])
        slurm_command(["scancel", "--full", "--signal=INT", job_id])
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while time.monotonic() < deadline and not is_done(job, task_states(job_id, job.tasks)):
            time.sleep(POLL_FIRST)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: no more grace
    finally:
        # What is left (a scancel) is short: let nothing cut it.
        with ignored():
            slurm_command(["scancel", job_id])


def report(job: ArrayJob, job_id: str, states: dict[int, TaskState], err: TextIO) -> int:
    """Names each failed task with its log files; the exit status to give."""
    failed = [s for _, s in sorted(states.items()) if s.state != "COMPLETED"]
    if not failed:
        err.write(f"hydraflow slurm: job {job_id}: all {job.tasks} tasks completed\n")
        return 0
    err.write(f"hydraflow slurm: job {job_id}: {len(failed)} of {job.tasks} tasks failed\n")
    for state in failed[:SHOWN_FAILURES]:
        how = f"exit code {state.exit_code}"
        if state.signal:
            how += f", signal {state.signal}"
        err.write(
            f"  task {state.task} {state.state} ({how}): "
            f"{job.log(state.task, 'err')} {job.log(state.task, 'out')}\n"
        )
    if len(failed) > SHOWN_FAILURES:
        err.write(f"  ... and {len(failed) - SHOWN_FAILURES} more\n")
    return FAILED


def submit_and_wait(job: ArrayJob, *, wait_for_tasks: bool) -> int:
    """Submits and prints the job id; with `wait_for_tasks`, waits and reports.
    A stopping signal while waiting cancels the array."""
    job_id = None
    try:
        job_id = submit(job, reporting=wait_for_tasks)
        limit = f", at most {job.max_parallel} at once" if job.max_parallel else ""
        tasks = f"{job.tasks} task" + ("s" if job.tasks != 1 else "")
        print(f"hydraflow slurm: submitted job {job_id}: {tasks}{limit}", flush=True)
        print(f"hydraflow slurm: logs in {job.folder}", flush=True)
        if not wait_for_tasks:
            submitted_not_waited(job_id)  # for `hydraflow run`'s summary
            return 0
        return report(job, job_id, wait(job, job_id, sys.stderr), sys.stderr)
    except KeyboardInterrupt as interrupt:
        if job_id is not None and wait_for_tasks:
            cancel(job, job_id, sys.stderr)
            with ignored():
                report(job, job_id, task_states(job_id, job.tasks), sys.stderr)
        return exit_status(signal_of(interrupt))


def slurm_handler_options(words: list[str]) -> list[str] | None:
    """The words after `slurm` when a `submit:` line runs this handler
    (`hydraflow slurm ...`, `python -m hydraflow slurm ...`), else None."""
    if len(words) >= 2 and Path(words[0]).name == "hydraflow" and words[1] == "slurm":
        return words[2:]
    runs_module = words[1:4] == ["-m", "hydraflow", "slurm"]
    if runs_module and Path(words[0]).name.startswith("python"):
        return words[4:]
    return None


def handler_line_error(words: list[str]) -> str | None:
    """What `hydraflow slurm` would refuse in a `submit:` line's words after
    `hydraflow slurm` (before hydraflow appends the parameter file), or None:
    parsed as the command parses them, with a stand-in parameter file."""
    if "--help" in words[: words.index("--") if "--" in words else None]:
        return None  # it prints its help and submits nothing: nothing to check
    try:
        with command.make_context("hydraflow slurm", [*words, "PARAMETER_FILE"]) as ctx:
            argv = after_dashes(ctx)
            if len(argv) < 2:
                return (
                    "expected `-- PROGRAM [ARGS]...` after its options "
                    "(hydraflow appends the parameter file)"
                )
            check_options(ctx.params["sbatch_options"])
    except click.ClickException as error:
        return error.format_message()
    except HydraflowError as error:
        return str(error)
    return None


EPILOG = """\b
Other options before `--` go to sbatch. In a jobs file:
  submit: hydraflow slurm --partition debug --time 01:00:00 --max-parallel 8 -- python train.py
hydraflow appends the parameter file; line N becomes array task N.
"""


@click.command(
    "slurm",
    cls=SplitAtDashes,
    context_settings={"ignore_unknown_options": True},
    epilog=EPILOG,
    short_help="Run a parameter file as a SLURM job array (a submit handler).",
)
@click.argument(
    "sbatch_options",
    nargs=-1,
    type=click.UNPROCESSED,
    metavar="[SBATCH OPTIONS]... -- PROGRAM [ARGS]... PARAMETER_FILE",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run at most N tasks at once (the array's %N throttle).",
)
@click.option(
    "--wait/--no-wait",
    "wait_for_tasks",
    default=True,
    show_default=True,
    help="Wait for every task, name the failed ones with their logs, exit non-zero "
    "if any failed; Ctrl-C cancels the array.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the sbatch command and script; submit nothing."
)
@click.pass_context
def command(
    ctx: click.Context,
    sbatch_options: tuple[str, ...],
    max_parallel: int | None,
    wait_for_tasks: bool,
    dry_run: bool,
) -> None:
    """Submit PARAMETER_FILE as one SLURM job array: task N runs PROGRAM ARGS with line N."""
    try:
        job = array_job(after_dashes(ctx), sbatch_options, max_parallel)
        if dry_run:
            click.echo(shlex.join(job.sbatch_argv()))
            click.echo(job.script(), nl=False)
            return
        with handled(raise_interrupted):
            status = submit_and_wait(job, wait_for_tasks=wait_for_tasks)
    except HydraflowError as error:
        fail(error)
    ctx.exit(status)
