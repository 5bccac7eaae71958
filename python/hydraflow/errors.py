"""Errors a user can cause, each with the exit status the CLI gives it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE = os.path.join(Path(__file__).parent, "")  # with a trailing separator

USAGE_ERROR = 2
# As a shell reports a command it cannot run.
NOT_RUNNABLE = 127


def closest(word: str, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The choice a mistyped `word` most likely meant ("did you mean"), or
    None; of choices as close, the first (`value.0` before `value.1`, where
    difflib would take the greater)."""
    import difflib

    best, best_score = None, cutoff
    for choice in choices:
        score = difflib.SequenceMatcher(None, choice, word).ratio()
        if score > best_score or (best is None and score == best_score):
            best, best_score = choice, score
    return best


class HydraflowError(Exception):
    """A user mistake: the CLI prints it without a traceback and exits non-zero."""

    exit_code = USAGE_ERROR


class ConfigError(HydraflowError):
    """Something is wrong in the jobs file; the message names where."""

    def __init__(self, file: str, where: str, message: str) -> None:
        self.file = file
        self.where = where
        self.message = message
        location = f"{file}: {where}" if where else file
        super().__init__(f"{location}: {message}")


class JobNotFoundError(HydraflowError):
    def __init__(self, name: str, known: list[str], file: str) -> None:
        jobs = ", ".join(known) if known else "(none)"
        meant = closest(name, known)
        hint = f"did you mean '{meant}'? The jobs are" if meant else "the jobs are"
        super().__init__(f"{file}: no job named '{name}'; {hint}: {jobs}")


class ProgramError(HydraflowError):
    """The job's program does not exist or cannot be executed."""

    exit_code = NOT_RUNNABLE


class StoreNotFoundError(HydraflowError, FileNotFoundError):
    """`hydraflow.load` found no MLflow store where it looked."""

    def __init__(self, path: str) -> None:
        self.path = path
        name_it = "load's tracking_uri=, --tracking-uri or MLFLOW_TRACKING_URI"
        super().__init__(
            f"no MLflow store at {path}: run some jobs there first, or name it ({name_it})"
        )


class ArtifactsNotFoundError(HydraflowError, FileNotFoundError):
    """Runs whose artifact folders are on no path of this machine: a store
    moved without its `mlruns/`, or artifacts kept elsewhere."""


# What `get` and `first`/`last` look for, as their lookup errors say.
EXACTLY_ONE, AT_LEAST_ONE = "exactly one", "at least one"


class ItemLookupError(HydraflowError, LookupError, ValueError):
    """`collection.get(...)` matched no item or several; `count` says how
    many. A ValueError too, as the published HydraFlow's `Collection.get` raises."""

    NOUN = "item"

    def __init__(self, count: int, criteria: str, expected: str = EXACTLY_ONE) -> None:
        self.count = count
        which = f"no {self.NOUN} matches" if count == 0 else f"{count} {self.NOUN}s match"
        super().__init__(f"{which} {criteria}; expected {expected}")


class RunLookupError(ItemLookupError):
    """`runs.get(...)` matched no run or several; `count` says how many."""

    NOUN = "run"


class FilterError(HydraflowError, ValueError):
    """A filter names a column the runs do not have, or a value that cannot
    be compared with it."""


class StoreError(HydraflowError):
    """The tracking store cannot be opened or written."""

    def __init__(self, uri: str, error: BaseException) -> None:
        from hydraflow.remote import mask_error, masked, missing_driver

        mask_error(error)  # the cause a traceback shows below this error
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # SQLAlchemy names the driver's error first: `(sqlite3.OperationalError) ...`.
        reason = re.sub(r"^\([A-Za-z_][\w.]*\) ", "", reason)
        reason = missing_driver(error) or reason + store_hint(reason, error, uri)
        super().__init__(masked(f"cannot use the MLflow store {uri}: {reason}"))


def store_hint(reason: str, error: BaseException, uri: str) -> str:
    # SQLAlchemy's errors carry SQLite's as `orig`.
    cause = getattr(error, "orig", None) or error
    if getattr(cause, "sqlite_errorname", None) == "SQLITE_READONLY_ROLLBACK":
        return (
            " (a hot journal from an interrupted writer needs rolling back, which hydraflow"
            " does only with write access to the store and its directory, and on a local file"
            " system: run any MLflow command on it where it was written)"
        )
    if "database is locked" in reason:
        from hydraflow.store import locked_hint, sqlite_path

        return locked_hint(sqlite_path(uri) or Path(uri))
    if any(text in reason for text in NOT_MLFLOW):
        return (
            " (the file is damaged or not an MLflow database: move it aside to start a new store)"
        )
    if "permission denied for" in reason:  # PostgreSQL's words, for a table or schema
        return (
            " (this database user lacks rights to MLflow's tables: grant them, or use their owner)"
        )
    if any(
        text in reason for text in ("readonly", "Read-only", "Permission denied", "unable to open")
    ):
        return " (this user may not read the store)" if unreadable(uri) else WRITABLE
    return ""


WRITABLE = " (the store and its directory must be writable)"


def unreadable(uri: str) -> bool:
    """Whether `uri` names a SQLite file this user may not read."""
    from hydraflow.store import sqlite_path

    path = sqlite_path(uri) or Path(uri)
    return path.is_file() and not os.access(path, os.R_OK)


# SQLite's words for a file that is no MLflow database: damaged, another
# kind of file, or a database without MLflow's tables (empty, another app's).
NOT_MLFLOW = ("not a database", "malformed", "damaged page", "no such table: experiments")


class RunBusyError(HydraflowError, RuntimeError):
    """`hydraflow.start_run` found the config's run running in a live process."""

    def __init__(self, run_id: str | None, owner: str) -> None:
        super().__init__(f"run {run_id} is running in {owner}")


class NotAMappingError(HydraflowError):
    def __init__(self, config: Any) -> None:
        super().__init__(f"a config must be a mapping (a dataclass or a dict), not {type(config)}")


class SchemaError(HydraflowError):
    """The composed config does not fit the app's schema."""


class SlurmError(HydraflowError):
    """SLURM refused or is missing: no traceback, exit status 1."""

    exit_code = 1


class NoRunsWarning(UserWarning):
    """`hydraflow.load` found no run of an experiment a pattern names; the
    message lists the experiments there are."""


def user_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn` in the calling function that
    points at the user's line: the first frame outside hydraflow's package,
    however deep the call came (a generator, `load` inside `iter_run_dirs`)."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(PACKAGE):
        frame = frame.f_back
        level += 1
    return level
