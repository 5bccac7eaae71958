"""The `hydraflow` command. It imports neither MLflow nor Hydra, so `--help`
and `--dry-run` answer at once."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from hydraflow import __version__
from hydraflow.errors import ConfigError, HydraflowError, JobNotFoundError
from hydraflow.runner import slurm
from hydraflow.runner.commands import (
    SplitAtDashes,
    after_dashes,
    fail,
    refuse_unknown_options,
    warn_own_options_after_dashes,
)
from hydraflow.runner.jobs import DEFAULT_FILE, Job, JobsFile, load_jobs
from hydraflow.tables import counted

if TYPE_CHECKING:
    from hydraflow.runner.plan import JobPlan

# `hydraflow runs`' status when no run matched (2 is a usage error).
NO_RUNS = 1
# The kind `hydraflow show` lists for a job with a mistake.
INVALID = "invalid"

EXAMPLES = """\b
Examples:
  hydraflow show                          list the jobs in hydraflow.yaml
  hydraflow run job_sequential --dry-run  print the commands, run nothing
  hydraflow run job_sequential            run them, one after another
  hydraflow run job_sequential width=500  override width in every command
  hydraflow run train -j 4 --keep-going   four commands at once, go on after failures
  hydraflow run train -- +extra=1         pass arguments verbatim to the program
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXAMPLES)
@click.version_option(__version__, "-V", "--version", prog_name="hydraflow")
def cli() -> None:
    """Run the Hydra jobs of hydraflow.yaml; every run lands in MLflow."""


cli.add_command(slurm.command)

config_option = click.option(
    "-c",
    "--config",
    "config_file",
    default=DEFAULT_FILE,
    show_default=True,
    metavar="FILE",
    help="The jobs file.",
)


@cli.command(
    cls=SplitAtDashes,
    context_settings={"ignore_unknown_options": True},
    epilog="\b\nKEY=VALUES arguments override the job's values in every command;\n"
    "other arguments go to the program: options before --multirun, the rest last.",
)
@click.argument("job", required=False, metavar="JOB")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--dry-run", is_flag=True, help="Print what would run; run nothing.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Commands to run at once.",
)
@click.option("--keep-going", is_flag=True, help="Run the remaining commands after a failure.")
@click.option(
    "--rerun",
    is_flag=True,
    help="Run every config again as a new run, although it finished (after a code change).",
)
@click.option(
    "--cold",
    is_flag=True,
    help="Start each command as a fresh process, never from the warm interpreter "
    "(also HYDRAFLOW_COLD=1).",
)
@click.option("-v", "--verbose", is_flag=True, help="Say how commands start (warm or cold, why).")
@config_option
@click.pass_context
def run(
    ctx: click.Context,
    job: str | None,
    args: tuple[str, ...],
    dry_run: bool,
    jobs: int,
    keep_going: bool,
    rerun: bool,
    cold: bool,
    verbose: bool,
    config_file: str,
) -> None:
    """Run JOB from the jobs file, with optional overrides."""
    from hydraflow.runner.executors import RunOptions, executor_for
    from hydraflow.runner.plan import CommandLine

    guard_output()
    warn_own_options_after_dashes(ctx)
    try:
        refuse_unknown_options(ctx, args)
        jobs_file = load_jobs(config_file)
        if job is None:  # click would say "Missing argument 'JOB'"; name the choices
            known = ", ".join(jobs_file.jobs) or "(none)"
            raise HydraflowError(f"{jobs_file.path}: name a job to run; the jobs are: {known}")
        definition = find_job(jobs_file, job)
        executor = executor_for(definition)
        options = RunOptions(
            jobs=jobs, keep_going=keep_going, rerun=rerun, cold=cold, verbose=verbose
        )
        executor.check_options(definition, options)
        command_line = CommandLine.parse(args, after_dashes(ctx))
        plan = executor.plan(definition, command_line)
        if dry_run:
            executor.dry_run(plan, sys.stdout)
            return
        status = executor.execute(plan, options).status
    except HydraflowError as error:
        fail(error)
        return
    ctx.exit(status)


class QuietPipe(io.TextIOBase):
    """A standard stream that, once its reader is gone (`| head`, a closed
    terminal), discards what follows instead of raising: the sweep goes on,
    and nothing reports a broken pipe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except OSError:
                self.discard()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except OSError:
                self.discard()

    def discard(self) -> None:
        self.broken = True
        # Python flushes the stream at exit too: point its descriptor at /dev/null.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def isatty(self) -> bool:
        return not self.broken and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors

    def __getattr__(self, name: str) -> Any:
        """Anything else (`buffer`, `reconfigure`, ...) is the stream's."""
        return getattr(self.stream, name)


def guard_output() -> None:
    if not isinstance(sys.stdout, QuietPipe):
        sys.stdout = QuietPipe(sys.stdout)
    if not isinstance(sys.stderr, QuietPipe):
        sys.stderr = QuietPipe(sys.stderr)


def invalid_jobs(invalid: list[str], total: int) -> str:
    """`invalid jobs (the others work): a, b`; the others only when there are."""
    names = ", ".join(invalid)
    if len(invalid) == total:
        return f"invalid job: {names}" if total == 1 else f"every job is invalid: {names}"
    return f"invalid job{'s' if len(invalid) > 1 else ''} (the others work): {names}"


@cli.command()
@click.argument("job", required=False)
@config_option
def show(job: str | None, config_file: str) -> None:
    """List the jobs with their command counts, or show one job in full."""
    try:
        jobs_file = load_jobs(config_file)
        if job is None:
            from hydraflow.tables import print_table

            rows = [job_row(name, definition) for name, definition in jobs_file.jobs.items()]
            # An invalid job's last cell is its error: printed whole.
            print_table(sys.stdout, [], rows, fit=False)
            invalid = [row[0] for row in rows if row[1] == INVALID]
            if invalid:
                fail(HydraflowError(f"{jobs_file.path}: {invalid_jobs(invalid, len(rows))}"))
            return
        definition = find_job(jobs_file, job)
        plan = plan_of(definition)
    except HydraflowError as error:
        fail(error)
        return
    click.echo(normalised_yaml(definition), nl=False)
    click.echo(f"# {counted(plan.total_commands, 'command')}, {plan.runs_described()}")


def plan_of(job: Job) -> JobPlan:
    from hydraflow.runner.executors import executor_for

    return executor_for(job).plan(job)


def job_row(name: str, job: Job | ConfigError) -> tuple[str, str, str, str]:
    """A job's name, kind and counts; for a job with a mistake, its error."""
    try:
        if isinstance(job, ConfigError):
            raise job
        plan = plan_of(job)
    except ConfigError as error:
        return (name, INVALID, "", f"{error.where}: {error.message.splitlines()[0]}")
    commands = counted(plan.total_commands, "command")
    return (name, job.kind, commands, plan.runs_described())


def find_job(jobs_file: JobsFile, name: str) -> Job:
    """The job named `name`; its error if it has a mistake."""
    try:
        found = jobs_file.jobs[name]
    except KeyError:
        raise JobNotFoundError(name, list(jobs_file.jobs), jobs_file.path) from None
    if isinstance(found, ConfigError):
        raise found
    return found


def normalised_yaml(job: Job) -> str:
    import yaml

    def literal(text: str) -> str:
        # The `${...}` were resolved: one left is literal text, written so
        # that the output read as a jobs file means the same.
        return text.replace("${", "\\${")

    def listed(items: tuple[str, ...]) -> list[str]:
        return [literal(item) for item in items]

    body: dict[str, Any] = {}
    if job.experiment != job.name:
        body["name"] = literal(job.experiment)
    body[job.kind] = literal(job.command)
    if job.add.items:
        body["add"] = listed(job.add.items)
    if job.stopping is not None:
        body["stopping"] = job.stopping
    sets = []
    for job_set in job.sets:
        fields = {k: listed(getattr(job_set, k).items) for k in ("each", "all", "add")}
        sets.append({k: v for k, v in fields.items() if v})
    body["sets"] = sets
    text: str = yaml.safe_dump({job.name: body}, sort_keys=False, allow_unicode=True)
    return text


def comma_list(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """Repeated options and comma-joined values alike: `--sort a,-b --sort c`."""
    return tuple(item.strip() for text in value for item in text.split(",") if item.strip())


store_option = click.option(
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="The MLflow store [default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].",
)


@cli.command(
    short_help="List the runs of a store, one row per run.",
    epilog="\b\nJOB arguments are experiment names or glob patterns (all when none);\n"
    "KEY=VALUES arguments keep the runs whose KEY is one of VALUES (sweep grammar:\n"
    "width=100,300  lr/m=1,2) or, for LOW:HIGH, within that interval (lr=0.001:0.1,\n"
    "lr=:0.1). The table shows what varies; what every run shares is said above it.\n"
    "Examples:\n"
    "  hydraflow runs job_sequential width=100\n"
    "  hydraflow runs train --sort -metrics.loss --limit 5\n"
    "  hydraflow runs train --columns 'optimizer.*,metrics.loss'\n"
    "  hydraflow runs 'job_*' --status all --format csv > runs.csv",
)
@click.argument("args", nargs=-1, metavar="[JOB]... [KEY=VALUES]...")
@click.option(
    "--status",
    default="FINISHED",
    show_default=True,
    help="A run status, several joined by commas, or 'all'.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How to print the runs (csv and json: every column).",
)
@click.option(
    "--columns",
    multiple=True,
    callback=comma_list,
    metavar="KEYS",
    help="The columns to print, by name or glob, comma-separated.",
)
@click.option("--all-columns", is_flag=True, help="Print every column in the table.")
@click.option(
    "--sort",
    multiple=True,
    callback=comma_list,
    metavar="KEYS",
    help="Sort by these columns; a leading '-' sorts that key descending.",
)
@click.option("--desc", is_flag=True, help="Sort descending (alone: the newest runs first).")
@click.option(
    "--limit", type=click.IntRange(min=0), default=None, help="Print the first N runs (of all)."
)
@click.option(
    "--code",
    is_flag=True,
    help="Add a column: whether the code that made each run is the code here now.",
)
@store_option
def runs(
    args: tuple[str, ...],
    status: str,
    output: str,
    columns: tuple[str, ...],
    all_columns: bool,
    sort: tuple[str, ...],
    desc: bool,
    limit: int | None,
    code: bool,
    tracking_uri: str | None,
) -> None:
    """List the runs of a store, one row per run: [JOB...] [KEY=VALUES...]."""
    from hydraflow.analysis.listing import View, list_runs

    view = View(output, columns, sort, desc, limit, all_columns, code)
    try:
        matched = list_runs(
            args, status=status, tracking_uri=tracking_uri, out=sys.stdout, view=view
        )
    except HydraflowError as error:
        fail(error)
    if not matched:
        sys.exit(NO_RUNS)  # as grep's 1: nothing matched (list_runs said why)


@cli.command(
    epilog="\b\nThe URL opens the runs table of JOB's experiment (an experiment name or\n"
    "glob pattern), showing the keys its sweep varies and the metrics. A\n"
    "tracking server's own UI is opened as it is. Examples:\n"
    "  hydraflow ui train\n"
    "  hydraflow ui train --port 5001 --tracking-uri results/mlflow.db"
)
@click.argument("job", required=False)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5000,
    show_default=True,
    help="The port MLflow's UI listens on.",
)
@click.option("--no-browser", is_flag=True, help="Print the URL; open no browser.")
@store_option
def ui(job: str | None, port: int, no_browser: bool, tracking_uri: str | None) -> None:
    """Start MLflow's UI on the store, at JOB's runs (127.0.0.1 only)."""
    from hydraflow.analysis.ui import run_ui
    from hydraflow.signals import exit_status, signal_of

    try:
        run_ui(job, port=port, tracking_uri=tracking_uri, browser=not no_browser)
    except HydraflowError as error:
        fail(error)
    except KeyboardInterrupt as interrupt:
        sys.exit(exit_status(signal_of(interrupt)))
