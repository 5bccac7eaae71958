"""The call executor: a Python function called once per command with the
command's argument list, in this process."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from hydraflow.errors import HydraflowError
from hydraflow.executors.processes import INTERRUPTED, Outcome
from hydraflow.executors.progress import PlainReporter
from hydraflow.plan import JobPlan

Function = Callable[[list[str]], object]


def function_name(plan: JobPlan) -> str:
    return plan.job.command.split()[0]


def import_function(plan: JobPlan) -> Function:
    """Imports `module.function`, looking in the current directory first."""
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
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HydraflowError(f"{where}: module '{module_name}' has no function '{attribute}'")
    return function  # type: ignore[no-any-return]


def run_calls(plan: JobPlan, reporter: PlainReporter, *, keep_going: bool) -> Outcome:
    function = import_function(plan)
    outcome = Outcome()
    for command in plan.commands():
        reporter.started(command)
        try:
            status = call_status(function, command.argv)
        except KeyboardInterrupt:
            reporter.ended(command, INTERRUPTED)
            return Outcome(INTERRUPTED, outcome.first_failure, interrupted=True)
        except Exception:
            reporter.message(
                f"command {command.index} raised: {function_name(plan)}({command.argv!r})"
            )
            traceback.print_exc()
            status = 1
        reporter.ended(command, status)
        if status != 0 and outcome.first_failure is None:
            outcome.first_failure, outcome.status = command, status
        if status != 0 and not keep_going:
            break
    return outcome


def call_status(function: Function, argv: list[str]) -> int:
    """0 when the function returns; a SystemExit's code when it exits."""
    try:
        function(argv)
    except SystemExit as exit:
        if exit.code is None:
            return 0
        return exit.code if isinstance(exit.code, int) else 1
    return 0
