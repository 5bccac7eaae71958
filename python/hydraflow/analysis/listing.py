"""`hydraflow runs`: the runs of a store on the command line, one row per run."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from hydraflow._core import SweepSyntaxError, expand_values
from hydraflow.analysis.filters import column_name
from hydraflow.analysis.runs import Runs, load
from hydraflow.errors import FilterError
from hydraflow.store import tracking_uri as resolve_uri

# Shown in the table; csv and json give every column.
HIDDEN_IN_TABLE = ("end_time", "artifact_dir")


def list_runs(
    args: Sequence[str],
    *,
    status: str,
    output: str,
    tracking_uri: str | None,
    out: IO[str],
    code: bool = False,
) -> int:
    """Prints the runs of the experiments named in `args` (all when none)
    that match its KEY=VALUES filters; returns the number printed. With
    `code`, a column says whether the code that made each run is the code
    on disk now."""
    experiments = [a for a in args if "=" not in a] or None
    statuses = None if status.lower() == "all" else status.split(",")
    runs: Runs[Any] = load(experiments, tracking_uri=tracking_uri, status=statuses)
    for pattern in unmatched(experiments or [], runs):
        print(f"hydraflow: no runs of an experiment matching {pattern!r}", file=sys.stderr)
    for argument in (a for a in args if "=" in a):
        runs = runs.filter(value_filter(runs, argument))
    frame = runs.frame
    if code:
        uri = resolve_uri(tracking_uri, Path.cwd())
        frame = frame.with_columns(code=code_column(uri, frame["run_id"].to_list()))
    if output == "csv":
        out.write(printable(frame).write_csv())
    elif output == "json":
        out.write(json.dumps(printable(frame).to_dicts(), indent=1) + "\n")
    elif len(runs):
        out.write(table(frame))
    if not len(runs):
        print("hydraflow: no runs match", file=sys.stderr)
    return len(runs)


def code_column(uri: str, run_ids: list[str]) -> pl.Series:
    """Per run: `current` when the files that made it hash the same on disk
    now (relative to the current directory), `changed: FILES` when not, null
    for a run made before hydraflow recorded code."""
    from hydraflow.tracking.code import Code, changed_text, code_on_disk

    tags = code_tags(uri, run_ids)
    cells: list[str | None] = []
    for run_id in run_ids:
        recorded = Code.from_tags(*tags.get(run_id, (None, None)))
        if recorded is None:
            cells.append(None)
            continue
        changed = code_on_disk(recorded, Path.cwd())
        cells.append("current" if changed == [] else changed_text(changed))
    return pl.Series("code", cells, dtype=pl.String)


def code_tags(uri: str, run_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """The code tags of the runs: read with `sqlite3` from a SQLite store,
    else through MLflow."""
    from hydraflow.mlflow_schema import CODE_FILES_TAG, CODE_TAG
    from hydraflow.store import connect_read_only, retry_busy, sqlite_path

    found: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    path = sqlite_path(uri)
    if path is not None:
        with contextlib.closing(connect_read_only(path)) as connection:
            rows = connection.execute(
                "SELECT run_uuid, key, value FROM tags WHERE key IN (?, ?)",
                (CODE_TAG, CODE_FILES_TAG),
            ).fetchall()
        for run_id, key, value in rows:
            if run_id in found:
                found[run_id][key] = value
    else:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        for run_id in run_ids:
            run = retry_busy(functools.partial(client.get_run, run_id))
            found[run_id] = dict(run.data.tags)
    return {r: (tags.get(CODE_TAG), tags.get(CODE_FILES_TAG)) for r, tags in found.items()}


def unmatched(patterns: Sequence[str], runs: Runs[Any]) -> list[str]:
    """The JOB arguments no loaded run's experiment matches: a typo, or a
    filter written without its `=`."""
    names = runs.frame["experiment"].unique().to_list()
    return [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]


def value_filter(runs: Runs[Any], argument: str) -> pl.Expr:
    """`KEY=VALUES` (sweep grammar: `width=100,300`, `lr=1:3:m`) as an
    expression: the column is any of the values, read as the column's type."""
    key, _, values = argument.partition("=")
    name, scale = key, ""
    if "/" in key and key not in runs.frame.columns:
        name, _, scale = key.rpartition("/")
    name = column_name(name, runs.frame.columns)
    try:
        texts = expand_values(values, scale)
    except SweepSyntaxError as error:
        raise FilterError(f"{argument}: {error}") from None
    return pl.col(name).is_in(typed_values(texts, runs.frame.schema[name], argument))


def typed_values(texts: list[str], dtype: Any, argument: str) -> pl.Series:
    if dtype == pl.Boolean:
        lowered = [t.lower() for t in texts]
        if not set(lowered) <= {"true", "false"}:
            raise FilterError(f"{argument}: the column holds true or false")
        return pl.Series([t == "true" for t in lowered], dtype=pl.Boolean)
    if isinstance(dtype, pl.List | pl.Struct | pl.Null):
        raise FilterError(f"{argument}: the column holds {dtype}; filter it in Python")
    try:
        return pl.Series(texts, dtype=pl.String).cast(dtype, strict=True)
    except pl.exceptions.PolarsError:
        raise FilterError(f"{argument}: the column holds {dtype} values") from None


def printable(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists and structs as JSON text, times in ISO 8601: what csv and json hold."""
    times = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    return nested_as_json(frame).with_columns(
        pl.col(n).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ") for n in times
    )


def nested_as_json(frame: pl.DataFrame) -> pl.DataFrame:
    nested = [n for n, t in frame.schema.items() if isinstance(t, pl.List | pl.Struct)]
    # `{"v":` + the value's JSON + `}`, cut down to the value's JSON.
    return frame.with_columns(
        pl.when(pl.col(n).is_not_null())
        .then(pl.struct(pl.col(n).alias("v")).struct.json_encode().str.slice(5))
        .str.strip_suffix("}")
        .alias(n)
        for n in nested
    )


def table(frame: pl.DataFrame) -> str:
    """An aligned text table: short run ids, local start times, numbers on the right."""
    shown = nested_as_json(frame.drop(HIDDEN_IN_TABLE)).with_columns(
        pl.col("run_id").str.slice(0, 8)
    )
    headers = shown.columns
    columns = [[cell(v) for v in shown[n]] for n in shown.columns]
    numeric = [shown.schema[n].is_numeric() for n in shown.columns]
    widths = [max(len(h), *(len(v) for v in c)) for h, c in zip(headers, columns, strict=True)]
    lines = []
    for row in [headers, *map(list, zip(*columns, strict=True))]:
        cells = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
