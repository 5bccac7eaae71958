"""The type of each config key across the runs loaded, and its columns.

The rule: a key gets one polars type when its values agree across the runs
(null fits any type; integers beside floats are floats; lists agree when
their items do, mappings in lists field by field). A key whose values have
different JSON types (a bool and an int, a list and a string, an int and a
string, ...) keeps each value exactly, as its JSON text: `true`, `500`,
`"auto"`, `[64,64]`. Types come from the values of the runs loaded alone,
so a value elsewhere (another experiment, a NaN under another key) changes
nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

Path = tuple[str, ...]
INT64 = range(-(2**63), 2**63)


class Clash(Exception):
    """Values of one key that no one polars type holds as they are."""


def json_text(value: Any) -> str:
    """A value's JSON text as a clashing key's column holds it: compact, keys sorted."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# The polars type of each JSON scalar's Python type.
SCALARS: dict[type, PolarsDataType] = {
    type(None): pl.Null(),
    bool: pl.Boolean(),
    int: pl.Int64(),
    float: pl.Float64(),
    str: pl.String(),
}


def dtype_of(value: Any) -> PolarsDataType:
    """The polars type that holds `value` exactly (Clash when none does)."""
    if isinstance(value, list):
        return pl.List(common_dtype(value))
    if isinstance(value, dict):
        return pl.Struct({str(k): dtype_of(v) for k, v in value.items()})
    return common_dtype([value])


def common_dtype(values: Sequence[Any]) -> PolarsDataType:
    """The one polars type that holds all `values` exactly (Clash when none
    does). Scalars are typed by their kinds, not one by one: a column of
    100,000 values costs a pass over their types."""
    kinds = set(map(type, values))
    dtype: PolarsDataType = pl.Null()
    for kind in kinds:
        if kind in SCALARS:
            dtype = unify(dtype, SCALARS[kind])
        elif kind is not list and kind is not dict:
            raise Clash
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if not (min(ints) in INT64 and max(ints) in INT64):
            raise Clash  # polars would make it text
    if list in kinds or dict in kinds:
        # Lists of scalars typed once per kinds of items they hold.
        seen: set[frozenset[type]] = set()
        for value in values:
            if type(value) is list:
                items = frozenset(map(type, value))
                # Only an int is looked up in the range: `2.5 in INT64` walks it.
                if items in seen and all(type(v) is not int or v in INT64 for v in value):
                    continue
                if items <= SCALARS.keys():
                    seen.add(items)
            if type(value) is list or type(value) is dict:
                dtype = unify(dtype, dtype_of(value))
    return dtype


def unify(a: PolarsDataType, b: PolarsDataType) -> PolarsDataType:
    """The one type holding values of types `a` and `b` as they are."""
    if a == b:
        return a
    if a == pl.Null:
        return b
    if b == pl.Null:
        return a
    if {type(a), type(b)} == {pl.Int64, pl.Float64}:
        return pl.Float64()
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        return pl.List(unify(a.inner, b.inner))
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fields = {f.name: f.dtype for f in a.fields}
        for f in b.fields:
            fields[f.name] = unify(fields.get(f.name, pl.Null()), f.dtype)
        return pl.Struct(fields)
    raise Clash


@dataclass
class Layout:
    """What the configs' documents hold, key by key (a key is a path of
    names): the type of each leaf whose values agree, the leaves whose values
    clash, and the keys that are a mapping in some document."""

    types: dict[Path, PolarsDataType] = field(default_factory=dict)
    clashing: set[Path] = field(default_factory=set)
    mappings: set[Path] = field(default_factory=set)

    @classmethod
    def of(cls, documents: Iterable[Any]) -> Layout:
        layout = cls()
        for document in documents:
            if isinstance(document, dict):
                layout.add(document, ())
        return layout

    def add(self, mapping: dict[str, Any], parent: Path) -> None:
        for name, value in mapping.items():
            path = (*parent, str(name))
            if isinstance(value, dict):
                self.mappings.add(path)
                self.add(value, path)
            elif path not in self.clashing:
                try:
                    self.types[path] = unify(self.types.get(path, pl.Null()), dtype_of(value))
                except Clash:
                    self.clashing.add(path)
                    self.types.pop(path, None)

    def by_python(self) -> list[Path]:
        """The keys whose columns Python makes: leaves that clash, and
        mappings that are something else (a text, a list) in another
        document, with all below them; the outermost of each, in order."""
        mixed = {
            p
            for p in self.mappings
            if p in self.clashing or self.types.get(p, pl.Null()) != pl.Null
        }
        roots = sorted(self.clashing | mixed)
        return [p for p in roots if not any(p[: len(r)] == r for r in roots if r != p)]

    def bulk_dtype(self, skipped: Sequence[Path]) -> pl.Struct:
        """The struct type polars decodes the documents to: every typed key
        but those under `skipped`, in the order the documents give them."""
        tree: dict[str, Any] = {}
        for path in [*self.types, *self.mappings]:
            if any(path[: len(s)] == s for s in skipped):
                continue
            node = tree
            for name in path[:-1]:
                node = node.setdefault(name, {})
            if path in self.mappings:
                node.setdefault(path[-1], {})
            elif self.types[path] != pl.Null or path[-1] not in node:
                node[path[-1]] = self.types[path]
        return as_struct(tree)


def as_struct(tree: dict[str, Any]) -> pl.Struct:
    return pl.Struct({name: as_struct(v) if isinstance(v, dict) else v for name, v in tree.items()})


def python_columns(prefix: str, values: Sequence[Any]) -> Iterator[tuple[str, pl.Series, bool]]:
    """The columns of the values under `prefix` (one per document, mappings
    spread into dotted keys), each typed by the rule or (True) as JSON text."""
    columns: dict[str, list[Any]] = {}
    mappings: set[str] = set()
    for row, value in enumerate(values):
        spread(prefix, value, row, columns, mappings, len(values))
    for key, column in columns.items():
        if key in mappings and all(v is None for v in column):
            continue  # a mapping, null in some documents: its keys have the columns
        yield key, *typed_series(key, column)


def spread(
    key: str, value: Any, row: int, columns: dict[str, list[Any]], mappings: set[str], rows: int
) -> None:
    """Puts the value's leaves at `row` of the columns of their dotted keys;
    the keys of mappings go to `mappings`."""
    if type(value) is dict:
        mappings.add(key)
        for name, item in value.items():
            spread(f"{key}.{name}" if key else str(name), item, row, columns, mappings, rows)
        return
    column = columns.get(key)
    if column is None:
        column = columns[key] = [None] * rows
    column[row] = value


def typed_series(name: str, values: list[Any]) -> tuple[pl.Series, bool]:
    """The values in the one type that holds them all, else (True) as JSON text."""
    try:
        dtype = common_dtype(values)
    except Clash:
        texts = [None if v is None else json_text(v) for v in values]
        return pl.Series(name, texts, pl.String), True
    with contextlib.suppress(TypeError, pl.exceptions.PolarsError):
        # Polars' own inference is the quicker for lists; its type must be the rule's.
        inferred = pl.Series(name, values, strict=True)
        if inferred.dtype == dtype:
            return inferred, False
    return pl.Series(name, values, dtype, strict=False), False
