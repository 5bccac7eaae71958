"""`hydraflow runs`: the runs of a store on the command line, one row per run."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from hydraflow._core import SweepSyntaxError, expand_values
from hydraflow.analysis import variation
from hydraflow.analysis.filters import column_name, in_range, json_any_of, json_condition
from hydraflow.analysis.runs import Runs, load
from hydraflow.errors import FilterError, NoRunsWarning
from hydraflow.remote import masked
from hydraflow.store import tracking_uri as resolve_uri
from hydraflow.tables import counted, print_table

# Rows of a table without --limit; csv and json hold them all.
MAX_TABLE_ROWS = 1000
# A shared value longer than this is cut in the line above the table (a
# constant of thousands of characters would fill the screen); csv and json hold it whole.
SHARED_VALUE_CHARS = 60


@dataclass(frozen=True)
class View:
    """Which columns, in which order, how many rows, in which format."""

    output: str = "table"
    columns: tuple[str, ...] = ()
    sort: tuple[str, ...] = ()
    descending: bool = False
    limit: int | None = None
    all_columns: bool = False
    # A `code` column: whether the code that made each run is the code on disk now.
    code: bool = False


def list_runs(
    args: Sequence[str], *, status: str, tracking_uri: str | None, out: IO[str], view: View
) -> int:
    """Prints the runs of the experiments named in `args` (all when none)
    that match its KEY=VALUES filters; returns how many matched (before
    `--limit`), having said on stderr why when none did."""
    experiments = [a for a in args if "=" not in a] or None
    statuses = None if status.lower() == "all" else status.split(",")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoRunsWarning)
        runs: Runs[Any] = load(experiments, tracking_uri=tracking_uri, status=statuses)
    unmatched = [w for w in caught if issubclass(w.category, NoRunsWarning)]
    for warning in caught:
        if warning in unmatched:
            print(f"hydraflow: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if not len(runs) and not unmatched:
        print(f"hydraflow: no {status} runs in {masked(runs.store_uri)}", file=sys.stderr)
    for argument in (a for a in args if "=" in a):
        runs = filtered(runs, argument)
    matched = len(runs)
    frame = runs.frame
    if view.code:
        uri = resolve_uri(tracking_uri, Path.cwd())
        frame = frame.with_columns(code=code_column(uri, frame["run_id"].to_list()))
    frame = ordered(frame, view)
    if view.output == "csv":
        out.write(printable(narrowed(frame, view)).write_csv())
    elif view.output == "json":
        out.write(as_json(narrowed(frame, view), runs.json_columns) + "\n")
    elif limited(frame, view.limit).height:
        table(frame, view, out)
    return matched


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


def filtered(runs: Runs[Any], argument: str) -> Runs[Any]:
    """The runs that pass one KEY=VALUES filter; when none does, says so
    with the values the key has."""
    name, condition = value_filter(runs, argument)
    kept = runs.matching((condition,), {}, keep=True)
    if len(runs) and not len(kept):
        print(f"hydraflow: no run has {argument}{runs.values_of([name])}", file=sys.stderr)
    return kept


def limited(frame: pl.DataFrame, limit: int | None) -> pl.DataFrame:
    return frame if limit is None else frame.head(limit)


def narrowed(frame: pl.DataFrame, view: View) -> pl.DataFrame:
    """Cut to `limit` rows, narrowed to `--columns`."""
    frame = limited(frame, view.limit)
    if view.columns:
        frame = frame.select(variation.pick_columns(frame, view.columns))
    return frame


def ordered(frame: pl.DataFrame, view: View) -> pl.DataFrame:
    """Sorted by `--sort` (nulls last), else in start order; `--desc` reverses."""
    if view.sort:
        keys = [k.removeprefix("-") for k in view.sort]
        names = [column_name(k, frame.columns) for k in keys]
        descending = [k.startswith("-") != view.descending for k in view.sort]
        frame = frame.sort(names, descending=descending, nulls_last=True, maintain_order=True)
    elif view.descending:  # the default order (start time) reversed: newest first
        frame = frame.reverse()
    return frame


# `LOW:HIGH` (either end may be left out): an interval, as `(low, high)` in Python.
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
INTERVAL = re.compile(r"([^:,()\[\]'\"]*):([^:,()\[\]'\"]*)")


def value_filter(runs: Runs[Any], argument: str) -> tuple[str, pl.Expr]:
    """`KEY=VALUES` as the column it filters and an expression: within an
    inclusive interval for `LOW:HIGH`, else any of the values the sweep
    grammar lists (`width=100,300`, `lr=1:3:m`, `x=0:1:0.5`), each read as
    the column's type."""
    key, _, values = argument.partition("=")
    name, scale = key, ""
    if "/" in key and key not in runs.frame.columns:
        name, _, scale = key.rpartition("/")
    name = column_name(name, runs.frame.columns)
    if name in runs.json_columns:
        return name, json_value_filter(runs.frame[name], values, scale, argument)
    dtype = runs.frame.schema[name]
    interval = INTERVAL.fullmatch(values.strip())
    if interval and any(interval.groups()):
        return name, in_range(pl.col(name), name, bounds(interval, scale, dtype, argument))
    texts = [unquoted(text, argument) for text in expanded(values, scale, argument)]
    return name, pl.col(name).is_in(typed_values(texts, dtype, argument).implode())


def unquoted(text: str, argument: str) -> str:
    """A quoted value (`'a,b'`, `"c d"`, `'12:30'`) as the text Hydra reads
    from it, escapes and all; any other as it is."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return str(override_value(text, argument))
    return text


def json_value_filter(column: pl.Series, values: str, scale: str, argument: str) -> pl.Expr:
    """`KEY=VALUES` on a column of JSON text (a key whose values clash):
    each value read as Hydra reads an override's (`true` a bool, `500` an
    int, `'1'` and `a` texts, `[64,64]` a list); `LOW:HIGH` the numbers within."""
    interval = INTERVAL.fullmatch(values.strip())
    if interval and any(interval.groups()):
        return json_condition(column, bounds(interval, scale, pl.Float64(), argument))
    typed = [override_value(text, argument) for text in expanded(values, scale, argument)]
    return json_any_of(column.name, typed)


def override_value(text: str, argument: str) -> Any:
    """A value as Hydra reads it on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except HydraException as error:
        reason = str(error).splitlines()[0]
        raise FilterError(f"{argument}: {text!r} is not a value Hydra reads ({reason})") from None


def bounds(interval: re.Match[str], scale: str, dtype: Any, argument: str) -> tuple[Any, Any]:
    """`LOW:HIGH` as the column's type; an error when LOW is above HIGH,
    as the sweep grammar refuses `2:1` (no run could be within)."""
    low, high = (bound(text, scale, dtype, argument) for text in interval.groups())
    if low is not None and high is not None and low > high:
        raise FilterError(
            f"{argument}: invalid interval {interval[0]!r}: {interval[1]} is greater than "
            f"{interval[2]}; write {interval[2]}:{interval[1]}"
        )
    return low, high


def bound(text: str, scale: str, dtype: Any, argument: str) -> Any:
    """One end of a `LOW:HIGH` interval as the column's type (None: open)."""
    if not text:
        return None
    [value] = expanded(text, scale, argument)
    if dtype.is_numeric() and not NUMBER.fullmatch(value):
        raise FilterError(f"{argument}: {text!r} is not a number")
    return typed_values([value], dtype, argument)[0]


def expanded(values: str, scale: str, argument: str) -> list[str]:
    """The values the sweep grammar lists, Hydra's `choice(...)` and
    `range(...)` among them expanded as Hydra expands them."""
    try:
        texts = expand_values(values, scale)
    except SweepSyntaxError as error:
        raise FilterError(f"{argument}: {error}") from None
    return [value for text in texts for value in hydra_sweep(text, argument)]


# Hydra's sweeps whose values a filter can list (an interval is LOW:HIGH here).
LISTED_SWEEPS = re.compile(r"(choice|range)\s*\(")


def hydra_sweep(text: str, argument: str) -> list[str]:
    """`choice(a,'b,c')` as ["'a'", "'b,c'"], `range(1,4)` as ['1', '2', '3']:
    the values Hydra sweeps, each written as Hydra reads it; any other value
    as it is."""
    if not LISTED_SWEEPS.match(text):
        return [text]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"key={text}")
        return [hydra_literal(value) for value in override.sweep_iterator()]
    except HydraException as error:
        reason = str(error).splitlines()[0]
        raise FilterError(f"{argument}: {text!r} is not a sweep Hydra reads ({reason})") from None


def hydra_literal(value: Any) -> str:
    """A value as an override writes it: text quoted, so that it reads back as text."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value)


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
    """Lists and structs as JSON text, times in ISO 8601: what csv holds."""
    return times_as_text(nested_as_json(frame))


def times_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    times = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    return frame.with_columns(pl.col(n).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ") for n in times)


def as_json(frame: pl.DataFrame, json_columns: Collection[str] = ()) -> str:
    """The runs as a JSON array of objects, one a run: lists and structs as
    JSON arrays and objects, a key whose types differ between runs (kept as
    JSON text in the frame) as its values, times in ISO 8601. Strict JSON has
    no NaN or infinity: polars' `write_json` writes them as null, and so does this."""
    rows = json.loads(times_as_text(frame).write_json())
    for row in rows:
        for name in json_columns:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name], parse_constant=lambda _: None)
    return json.dumps(rows, indent=1, allow_nan=False)


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


def table(frame: pl.DataFrame, view: View, out: IO[str]) -> None:
    """The runs as a table that fits the terminal: by default the settings
    that vary and the metrics, what every run shares said once above. Both
    are of all the runs matched, `--limit` or not: the first rows of a table
    of them, under a title that says how many there are."""
    title: list[str] = []
    if view.columns or view.all_columns:
        shown = narrowed(frame, view)
    else:
        shown = limited(frame, view.limit).select(variation.table_columns(frame))
        count = counted(frame.height, "run")
        cut = shown.height < frame.height
        if cut:
            count = f"the first {shown.height} of {count}"
        constants = variation.constants(frame).items()
        shared = " ".join(f"{k}={shortened(cell(v))}" for k, v in constants)
        title = [f"{count}; in every one: {shared}"] if shared else [count] if cut else []
    if view.limit is None and shown.height > MAX_TABLE_ROWS:
        # Rich lays out about a thousand rows a second on a loaded machine.
        print(
            f"hydraflow: the first {MAX_TABLE_ROWS} of {shown.height} runs"
            " (--limit N for more, --format csv for all)",
            file=sys.stderr,
        )
        shown = shown.head(MAX_TABLE_ROWS)
    shown = nested_as_json(shown)
    if "run_id" in shown.columns:
        shown = shown.with_columns(pl.col("run_id").str.slice(0, 8))
    rows = [[cell(v) for v in row] for row in shown.iter_rows()]
    right = [dtype.is_numeric() for dtype in shown.dtypes]
    print_table(out, shown.columns, rows, right=right, title=title)


def shortened(text: str, limit: int = SHARED_VALUE_CHARS) -> str:
    """`text`, or its start and how long it is when longer than `limit`."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}…({len(text)} characters)"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
