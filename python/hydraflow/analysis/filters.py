"""`runs.filter(...)` arguments to one polars expression."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import polars as pl

from hydraflow.analysis.layout import json_text
from hydraflow.errors import FilterError, closest


def column_name(key: str, columns: Sequence[str]) -> str:
    """A column by its name or with `__` for dots (`model__depth`); a config
    group's name is its option, `choice.model` (Hydra's `model=cnn`)."""
    dotted = key.replace("__", ".")
    for name in (key, dotted, f"choice.{key}", f"choice.{dotted}"):
        if name in columns:
            return name
    known = ", ".join(columns)
    meant = meant_column(key, columns)
    hint = f" (did you mean {meant!r}?)" if meant else ""
    raise FilterError(f"no column {key!r} in the runs{hint}; the columns are: {known}")


def meant_column(key: str, columns: Sequence[str]) -> str | None:
    """The column a mistaken key most likely meant: the one it ends
    (`loss` for `metrics.loss`; None when several do, `name` of `model.name`
    and `data.name`), else the closest spelling (`modle` for the group
    `model`), else None."""
    endings = [name for name in columns if name.endswith(f".{key}")]
    if endings:
        return endings[0] if len(endings) == 1 else None
    groups = [name.removeprefix("choice.") for name in columns if name.startswith("choice.")]
    return closest(key, [*columns, *groups], cutoff=0.75)


def condition(
    frame: pl.DataFrame, key: str, value: Any, json_columns: Collection[str] = ()
) -> pl.Expr:
    """The rows whose `key` matches `value`: equal to it; any of a list;
    within an inclusive 2-tuple range (None for an open end); or for which
    a callable returns true. A column of JSON text (a key whose values
    clash) is matched by the values it holds, not by their text."""
    name = column_name(key, frame.columns)
    column = pl.col(name)
    dtype = frame.schema[name]
    if name in json_columns:
        return json_condition(frame[name], value)
    if callable(value):
        return predicate(frame, name, value)
    if isinstance(value, tuple):
        return in_range(column, name, value)
    if isinstance(value, list) and not (isinstance(dtype, pl.List) and not nested(value)):
        choices = pl.Series(values=value, dtype=dtype, strict=False)
        if isinstance(dtype, pl.List):
            return column.is_in(choices.implode())
        # Only the values the column holds as they are: the cast made 100.5 a 100.
        kept = [cast for cast, given in zip(choices.to_list(), value, strict=True) if cast == given]
        return column.is_in(pl.Series(values=kept, dtype=dtype).implode())
    if value is None:
        return column.is_null()
    if isinstance(dtype, pl.List):
        value = pl.lit(pl.Series([value], dtype=dtype, strict=False)).first()
    equal: pl.Expr = column == value
    return equal


def json_condition(texts: pl.Series, value: Any) -> pl.Expr:
    """The rows of a JSON-text column whose value matches `value` as a
    typed column's would: equal to it (1 and 1.0 alike, never a bool
    for a number), any of a list or set (or the list itself), within a
    range (numbers only), or for which a callable returns true."""
    column = pl.col(texts.name)
    if value is None:
        return column.is_null()
    if callable(value) or isinstance(value, tuple):
        test = value if callable(value) else in_bounds(texts.name, value)
        kept = [t for t in texts.drop_nulls().unique() if test(json.loads(t))]
    elif isinstance(value, list | set):
        kept = [t for v in value for t in json_texts(v)]
        kept += json_texts(list(value)) if isinstance(value, list) else []
    else:
        kept = json_texts(value)
    return column.is_in(pl.Series(kept, dtype=pl.String).implode())


def json_any_of(name: str, values: Sequence[Any]) -> pl.Expr:
    """The rows of a JSON-text column whose value is one of `values`."""
    kept = [t for v in values for t in json_texts(v)]
    return pl.col(name).is_in(pl.Series(kept, dtype=pl.String).implode())


def json_texts(value: Any) -> list[str]:
    """The JSON texts a value equals: a number's as int and as float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        forms = {json_text(float(value))}
        if float(value).is_integer():
            forms.add(json_text(int(value)))
        return sorted(forms)
    return [json_text(value)]


def in_bounds(name: str, bounds: tuple[Any, ...]) -> Callable[[Any], bool]:
    """Whether a value is a number within an inclusive (low, high) range."""
    if len(bounds) != 2:
        raise FilterError(f"{name}: a range is a 2-tuple (low, high), not {bounds!r}")
    low, high = bounds

    def within(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (low is None or value >= low) and (high is None or value <= high)

    return within


def nested(values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, list) for v in values)


def in_range(column: pl.Expr, name: str, bounds: tuple[Any, ...]) -> pl.Expr:
    if len(bounds) != 2:
        raise FilterError(f"{name}: a range is a 2-tuple (low, high), not {bounds!r}")
    low, high = bounds
    expr = pl.lit(True)
    if low is not None:
        expr = expr & (column >= low)
    if high is not None:
        expr = expr & (column <= high)
    return expr


def predicate(frame: pl.DataFrame, name: str, test: Callable[[Any], Any]) -> pl.Expr:
    mask = [bool(test(value)) for value in frame[name]]
    return pl.lit(pl.Series(mask, dtype=pl.Boolean))


def combine(
    frame: pl.DataFrame, criteria: Mapping[str, Any], json_columns: Collection[str] = ()
) -> pl.Expr:
    expr = pl.lit(True)
    for key, value in criteria.items():
        expr = expr & condition(frame, key, value, json_columns)
    return expr


def describe(predicates: Sequence[Any], criteria: Mapping[str, Any]) -> str:
    """The criteria as the user wrote them, for error messages."""
    parts = [repr(p) for p in predicates] + [f"{k}={v!r}" for k, v in criteria.items()]
    return ", ".join(parts) if parts else "(no criteria)"
