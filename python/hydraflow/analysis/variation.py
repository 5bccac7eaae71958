"""What a collection of runs varies and what it holds constant: the keys a
person looks at first, in the terminal, in `repr` and in MLflow's UI."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from hydraflow.analysis.filters import column_name
from hydraflow.analysis.reading import CHOICE_PREFIX, METRIC_PREFIX
from hydraflow.errors import FilterError

# Columns every run has its own value of: never a setting of the sweep.
OWN_VALUES = ("run_id", "start_time", "end_time", "artifact_dir")
# What a run returned (`value`, or `value.0`, ... for several objectives) and
# whether it was stopped early: results, like the metrics.
RESULT = re.compile(r"value(\.\d+)?|stopped")


def settings(frame: pl.DataFrame) -> list[str]:
    """The columns that describe how a run was made: experiment, status,
    config keys and choices (not its id, times, artifacts or results)."""
    return [
        c
        for c in frame.columns
        if c not in OWN_VALUES and not c.startswith(METRIC_PREFIX) and not RESULT.fullmatch(c)
    ]


def results(frame: pl.DataFrame) -> list[str]:
    """The app's return value and `stopped`, when the runs have them."""
    return [c for c in frame.columns if RESULT.fullmatch(c)]


def metrics(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(METRIC_PREFIX)]


def distinct_counts(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, int]:
    """How many values each column takes (null is one), in one pass."""
    if not columns or frame.is_empty():
        return dict.fromkeys(columns, 0)
    counts = frame.select(pl.col(c).n_unique() for c in columns)
    return {c: int(counts[c][0]) for c in columns}


def varying(frame: pl.DataFrame, *, implied: bool = False) -> list[str]:
    """The settings whose value differs between runs, in frame order.

    Unless `implied`, a key under a config group that changes only with the
    group's option (`model.depth` with `choice.model`) is left out: the
    option already says it."""
    counts = distinct_counts(frame, settings(frame))
    changing = [c for c, n in counts.items() if n > 1]
    if implied:
        return changing
    return [c for c in changing if not follows_choice(frame, c)]


def constants(frame: pl.DataFrame) -> dict[str, Any]:
    """The settings every run shares, with their value (keys no run has left out)."""
    counts = distinct_counts(frame, settings(frame))
    first = frame.row(0, named=True) if frame.height else {}
    return {c: first[c] for c, n in counts.items() if n == 1 and first[c] is not None}


def follows_choice(frame: pl.DataFrame, column: str) -> bool:
    """True when `column` lies under a config group (`model.depth` under
    `model`) and takes one value per option of that group."""
    groups = [
        c
        for c in frame.columns
        if c.startswith(CHOICE_PREFIX)
        and column.startswith(c.removeprefix(CHOICE_PREFIX).replace("/", ".") + ".")
    ]
    if not groups:
        return False
    per_option = frame.group_by(groups).agg(pl.col(column).n_unique())[column]
    return bool(per_option.max() == 1)


def table_columns(frame: pl.DataFrame) -> list[str]:
    """What a person reads first: the run's id, the settings that vary, the
    results and metrics that some of these runs have (runs filtered to the
    scalar returns leave `value.0`, `value.1` empty)."""
    held = [
        c
        for c in [*results(frame), *metrics(frame)]
        if frame.is_empty() or frame[c].null_count() < frame.height
    ]
    return ["run_id", *varying(frame), *held]


def pick_columns(frame: pl.DataFrame, patterns: Sequence[str]) -> list[str]:
    """The columns named by `patterns` (names, `__` for dots, or globs), in
    the patterns' order, each once; FilterError for a pattern naming none."""
    picked: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            found = [c for c in frame.columns if fnmatch.fnmatchcase(c, pattern)]
            if not found:
                columns = ", ".join(frame.columns)
                raise FilterError(f"no column matches {pattern!r}; the columns are: {columns}")
        else:
            found = [column_name(pattern, frame.columns)]
        picked.extend(c for c in found if c not in picked)
    return picked
