"""The `hydraflow` command. It imports neither MLflow nor Hydra, so `--help`
and `--dry-run` answer at once."""

from __future__ import annotations

import sys
from typing import Any

import click

from hydraflow import __version__, slurm
from hydraflow.errors import HydraflowError, JobNotFoundError
from hydraflow.jobs import DEFAULT_FILE, Job, JobsFile, load_jobs

EXAMPLES = """\b
Examples:
  hydraflow show                          list the jobs in hydraflow.yaml
  hydraflow run job_sequential --dry-run  print the commands, run nothing
  hydraflow run job_sequential            run them, one after another
  hydraflow run job_sequential width=500  override width in every command
  hydraflow run train -j 4 --keep-going   four commands at once, go on after failures
  hydraflow run train -- --cfg job        pass arguments verbatim to the program
"""


def fail(error: HydraflowError) -> None:
    """Shows a user mistake as `Error: ...` (no traceback) and exits with its status."""
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


class RunCommand(click.Command):
    """Sets aside everything after `--`: it goes to the program verbatim."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["verbatim"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


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
    cls=RunCommand,
    context_settings={"ignore_unknown_options": True},
    epilog="\b\nKEY=VALUES arguments override the job's values in every command;\n"
    "other arguments go to the program, before --multirun.",
)
@click.argument("job")
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
@config_option
@click.pass_context
def run(
    ctx: click.Context,
    job: str,
    args: tuple[str, ...],
    dry_run: bool,
    jobs: int,
    keep_going: bool,
    config_file: str,
) -> None:
    """Run JOB from the jobs file, with optional overrides."""
    from hydraflow.executors import dry_run as show_dry_run
    from hydraflow.executors import execute
    from hydraflow.plan import CommandLine, plan_job

    try:
        definition = find_job(load_jobs(config_file), job)
        check_options(definition, jobs=jobs, keep_going=keep_going)
        command_line = CommandLine.parse(args, ctx.meta.get("verbatim", ()))
        plan = plan_job(definition, command_line)
        if dry_run:
            show_dry_run(plan, sys.stdout)
            return
        status = execute(plan, jobs=jobs, keep_going=keep_going)
    except HydraflowError as error:
        fail(error)
        return
    ctx.exit(status)


@cli.command()
@click.argument("job", required=False)
@config_option
def show(job: str | None, config_file: str) -> None:
    """List the jobs with their command counts, or show one job in full."""
    from hydraflow.plan import plan_job

    try:
        jobs_file = load_jobs(config_file)
        if job is None:
            rows = [job_row(definition) for definition in jobs_file.jobs.values()]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            for row in rows:
                cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                click.echo("  ".join(cells).rstrip())
            return
        definition = find_job(jobs_file, job)
        plan = plan_job(definition)
    except HydraflowError as error:
        fail(error)
        return
    click.echo(normalised_yaml(definition), nl=False)
    click.echo(f"# {plan.total_commands} commands, {plan.total_runs} runs")


def check_options(job: Job, *, jobs: int, keep_going: bool) -> None:
    """Options that cannot apply to this kind of job are refused, not ignored."""
    if jobs > 1 and job.kind != "run":
        raise HydraflowError(f"-j/--jobs applies to 'run' jobs; '{job.name}' is a {job.kind} job")
    if keep_going and job.kind == "submit":
        message = f"--keep-going applies to 'run' and 'call' jobs; '{job.name}' is a submit job"
        raise HydraflowError(message)


def job_row(job: Job) -> tuple[str, str, str, str]:
    from hydraflow.plan import plan_job

    plan = plan_job(job)
    return (job.name, job.kind, f"{plan.total_commands} commands", f"{plan.total_runs} runs")


def find_job(jobs_file: JobsFile, name: str) -> Job:
    try:
        return jobs_file.jobs[name]
    except KeyError:
        raise JobNotFoundError(name, list(jobs_file.jobs), jobs_file.path) from None


def normalised_yaml(job: Job) -> str:
    import yaml

    def listed(items: tuple[str, ...]) -> list[str]:
        return list(items)

    body: dict[str, Any] = {job.kind: job.command}
    if job.add.items:
        body["add"] = listed(job.add.items)
    sets = []
    for job_set in job.sets:
        fields = {k: listed(getattr(job_set, k).items) for k in ("each", "all", "add")}
        sets.append({k: v for k, v in fields.items() if v})
    body["sets"] = sets
    text: str = yaml.safe_dump({job.name: body}, sort_keys=False, allow_unicode=True)
    return text
