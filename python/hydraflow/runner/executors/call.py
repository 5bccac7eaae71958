"""The call executor: a Python function called once per command with the
command's argument list, in this process."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from hydraflow.errors import HydraflowError
from hydraflow.protocol import EVENTS_ENV
from hydraflow.runner.executors.event_log import EventLog
from hydraflow.runner.executors.progress import PlainReporter
from hydraflow.runner.plan import Command, JobPlan
from hydraflow.signals import Interrupted, exit_status, handled, signal_of

Function = Callable[[list[str]], object]


def function_name(plan: JobPlan) -> str:
    return plan.job.command.split()[0]


def import_function(plan: JobPlan) -> Function:
    """Imports `module.function`, looking in the current directory first;
    any failure to import is one located message."""
    name = function_name(plan)
    where = f"{plan.job.file}: jobs.{plan.job.name}.call"
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise HydraflowError(f"{where}: '{name}' must be module.function")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise HydraflowError(f"{where}: cannot import module '{module_name}': {error}") from None
    except SyntaxError as error:
        place = f"{error.filename}, line {error.lineno}"
        message = f"cannot import module '{module_name}': syntax error in {place}: {error.msg}"
        raise HydraflowError(f"{where}: {message}") from None
    except Exception as error:
        message = f"importing module '{module_name}' raised {type(error).__name__}: {error}"
        raise HydraflowError(f"{where}: {message}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HydraflowError(f"{where}: module '{module_name}' has no function '{attribute}'")
    if is_hydra_app(function):
        hint = f"run it with `run: python {module_name.replace('.', '/')}.py`"
        raise HydraflowError(f"{where}: '{name}' is a Hydra app, which a call cannot run; {hint}")
    return function  # type: ignore[no-any-return]


# The wrappers `@hydraflow.main` and `@hydra.main` return (functools.wraps
# renames them, not their code).
HYDRA_WRAPPERS = ("run_with_hydra", "decorated_main")


def is_hydra_app(function: object) -> bool:
    """A `@hydraflow.main` or `@hydra.main` app: it reads its overrides from
    `sys.argv` (the CLI's own here), and Hydra finds its configs from the
    script run as `__main__`, so called with an argument list it fails."""
    code = getattr(function, "__code__", None)
    wrapped = getattr(function, "__wrapped__", None)
    return wrapped is not None and getattr(code, "co_name", "") in HYDRA_WRAPPERS


@contextlib.contextmanager
def events_variable(path: Path) -> Iterator[None]:
    """HYDRAFLOW_EVENTS for one in-process call, restored afterwards."""
    previous = os.environ.get(EVENTS_ENV)
    os.environ[EVENTS_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(EVENTS_ENV, None)
        else:
            os.environ[EVENTS_ENV] = previous


def run_calls(
    plan: JobPlan, reporter: PlainReporter, events: EventLog, *, keep_going: bool
) -> None:
    function = import_function(plan)
    execution = reporter.execution

    def interrupt(signum: int, frame: FrameType | None) -> None:
        """Recorded, then raised in the called function (so an app ends its run KILLED)."""
        if execution.signal is None:
            execution.signal = signum
        raise Interrupted(signum)

    with handled(interrupt):
        for command in plan.commands():
            status = call_command(function, command, plan, reporter, events)
            if execution.signal is not None:
                break
            if status != 0 and not keep_going:
                break


def call_command(
    function: Function, command: Command, plan: JobPlan, reporter: PlainReporter, events: EventLog
) -> int:
    reporter.started(command)
    try:
        with events_variable(events.path_for(command.index)):
            status = call_status(function, command.argv)
    except KeyboardInterrupt as interrupt:
        if reporter.execution.signal is None:
            reporter.execution.signal = signal_of(interrupt)
        status = exit_status(reporter.execution.signal)
    except Exception:
        reporter.message(f"command {command.index} raised: {function_name(plan)}({command.argv!r})")
        traceback.print_exc()
        status = 1
    completed = reporter.execution.signal is None
    events.command_ended(command.index, command.runs, completed=completed, succeeded=status == 0)
    reporter.ended(command, status)
    return status


def call_status(function: Function, argv: list[str]) -> int:
    """0 when the function returns; a SystemExit's code when it exits."""
    try:
        function(argv)
    except SystemExit as exit:
        if exit.code is None:
            return 0
        return exit.code if isinstance(exit.code, int) else 1
    return 0
