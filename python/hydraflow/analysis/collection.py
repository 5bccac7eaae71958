"""`RunCollection`: the published HydraFlow's collection of runs, over `Runs`.

It is `Runs` with the published semantics (`filter` by keys of `Run.get`,
`group_by` into collections, `to_frame` of keys and functions), so a user's
analysis code of the published tool runs unchanged, and it keeps every
`Runs` method (`frame`, `history`, ...). A key that is a config column with a
value in every run is read from the frame, in bulk; any other key, and every
function, go run by run through `Run.get`, as the published tool does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Generic, overload

import polars as pl

from hydraflow.analysis.filters import condition
from hydraflow.analysis.frame import BASE_SCHEMA
from hydraflow.analysis.reading import CHOICE_PREFIX, METRIC_PREFIX, open_store
from hydraflow.analysis.runs import C, ImplT, Run, Runs, load
from hydraflow.errors import RunLookupError

Getter = Callable[[Any, str, Any], Any]
# Columns of the frame that are not config keys.
NOT_CONFIG = (*BASE_SCHEMA, "stopped", "value")
# A criterion the frame answers in bulk: a plain value, a list or set of them,
# or a (low, high) range.
SCALARS = (bool, int, float, str)


class RunCollection(Runs[C], Generic[C, ImplT]):
    """Runs as the published HydraFlow's `RunCollection`: a sequence of `Run`
    (index, slice, iterate, `len`), with `filter`, `get`, `first`, `last`,
    `to_frame`, `group_by` and more taking keys of `Run.get`.

    `RunCollection(runs)` collects `Run` objects; `Run.load(run_dirs, Impl)`
    collects the runs in folders, reading their store once. `get` replaces
    `Run.get` as the way a key's value is found.
    """

    SHORT_RUN_REPR = True

    def __init__(self, runs: Iterable[Run[Any, Any]] = (), get: Getter | None = None) -> None:
        items = list(runs)
        rows = [run.row for run in items]
        frame = (
            pl.from_dicts(rows, infer_schema_length=None)
            if rows
            else pl.DataFrame(schema=BASE_SCHEMA)
        )
        configs = pl.DataFrame(schema={"run_id": pl.String, "config": pl.String})
        store = open_store(store_uri(items[0])) if items else None
        super().__init__(frame, configs, store, None)  # type: ignore[arg-type]
        self._objects = {run.run_id: run for run in items}
        self._getter = get

    @classmethod
    def view(
        cls, runs: Runs[C], impl_factory: Callable[..., ImplT] | None
    ) -> RunCollection[C, ImplT]:
        """These runs as a collection whose runs' `impl` comes from `impl_factory`."""
        collection: RunCollection[C, ImplT] = object.__new__(cls)
        collection.__dict__.update(runs.__dict__)
        collection._objects = {}
        collection._impl_factory = impl_factory
        collection._changed = [False]
        collection._getter = None
        return collection

    def __repr__(self) -> str:
        if not len(self):
            return f"{type(self).__name__}(empty)"
        kind = repr(self[0]).split("(", 1)[0]
        return f"{type(self).__name__}({kind}, n={len(self)})"

    def __bool__(self) -> bool:
        return bool(len(self))

    @overload
    def __getitem__(self, index: int) -> Run[C, ImplT]: ...
    @overload
    def __getitem__(self, index: slice | Iterable[int]) -> RunCollection[C, ImplT]: ...
    @overload
    def __getitem__(self, index: str) -> pl.Series: ...
    def __getitem__(self, index: Any) -> Any:
        """A run; a collection (a slice, or positions); a key's values (a name)."""
        if isinstance(index, str):
            return self.to_series(index)
        if isinstance(index, int | slice):
            return super().__getitem__(index)
        return self.derive(self._frame[list(index)])

    def __iter__(self) -> Iterator[Run[C, ImplT]]:
        return super().__iter__()

    def value_of(self, run: Run[Any, Any], key: str, default: Any = MISSING) -> Any:
        if self._getter is not None:
            return self._getter(run, key, default)
        return run.get(key, default)

    def column(self, key: str) -> pl.Series | None:
        """The key's values straight from the frame, when they are there:
        a config key that every run has, no getter of the user's, no run's
        config changed since it was read."""
        name = key.replace("__", ".")
        if self._getter is not None or self._changed[0] or name not in self._frame.columns:
            return None
        if name in NOT_CONFIG or name.startswith((METRIC_PREFIX, CHOICE_PREFIX, "value.")):
            return None
        series = self._frame[name]
        return None if series.null_count() else series.alias(key)

    def to_list(self, key: str, default: Any = MISSING) -> list[Any]:
        """Each run's value of `key` (`Run.get`), `default` where it has none."""
        series = self.column(key)
        if series is not None:
            return series.to_list()
        return [self.value_of(run, key, default) for run in self]

    def to_series(self, key: str, default: Any = MISSING, *, name: str | None = None) -> pl.Series:
        """`to_list` as a polars Series named `name` or `key`."""
        series = self.column(key)
        if series is not None:
            return series.alias(name or key)
        return pl.Series(name or key, self.to_list(key, default))

    def to_numpy(self, key: str, default: Any = MISSING) -> Any:
        """`to_list` as a NumPy array."""
        import numpy as np

        return np.array(self.to_list(key, default))

    def unique(self, key: str, default: Any = MISSING) -> Any:
        """The key's distinct values, sorted, as a NumPy array."""
        import numpy as np

        return np.unique(self.to_numpy(key, default), axis=0)

    def n_unique(self, key: str, default: Any = MISSING) -> int:
        return len(self.unique(key, default))

    def map(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """`function(run, *args, **kwargs)` for each run, lazily."""
        return (function(run, *args, **kwargs) for run in self)

    def mask(self, criterion: Any) -> pl.Series:
        """Which runs meet one criterion of `filter`."""
        if isinstance(criterion, pl.Expr):
            return self._frame.select(criterion.fill_null(False)).to_series()
        if callable(criterion):
            return pl.Series([bool(criterion(run)) for run in self], dtype=pl.Boolean)
        if isinstance(criterion, tuple):
            key, wanted = criterion
            return self.key_mask(key, wanted)
        flags = list(criterion)
        if len(flags) != len(self):
            raise ValueError(f"a mask of {len(flags)} values for {len(self)} runs")
        return pl.Series([bool(flag) for flag in flags], dtype=pl.Boolean)

    def key_mask(self, key: str, wanted: Any) -> pl.Series:
        series = self.column(key)
        if series is not None and in_bulk(wanted, series.dtype):
            frame = pl.DataFrame([series])
            if isinstance(wanted, set):
                wanted = list(wanted)
            with_nulls = frame.select(condition(frame, key, wanted)).to_series()
            return with_nulls.fill_null(False)
        values = [self.value_of(run, key, MISSING) for run in self]
        return pl.Series([matches(value, wanted) for value in values], dtype=pl.Boolean)

    def filter(self, *criteria: Any, **keys: Any) -> RunCollection[C, ImplT]:
        """The runs that meet every criterion: a function of a run, a
        `(key, value)` pair, a mask of booleans, a polars expression, or
        `key=value`. A value matches a run's value of the key (`Run.get`) by
        being equal to it, holding it (a list or set), bounding it (a
        `(low, high)` tuple, inclusive), or being a function true of it."""
        found = self
        for criterion in (*criteria, *keys.items()):
            found = found.derive(found._frame.filter(found.mask(criterion)))
        return found

    def exclude(self, *criteria: Any, **keys: Any) -> RunCollection[C, ImplT]:
        """The runs that meet none of the criteria of `filter`."""
        kept = self
        for criterion in (*criteria, *keys.items()):
            kept = kept.derive(kept._frame.filter(~kept.mask(criterion)))
        return kept

    def derive(self, frame: pl.DataFrame) -> RunCollection[C, ImplT]:
        collection: RunCollection[C, ImplT] = super().derive(frame)  # type: ignore[assignment]
        return collection

    def try_get(self, *criteria: Any, **keys: Any) -> Run[C, ImplT] | None:
        """The one run that meets the criteria, None for none; ValueError
        (RunLookupError) for several."""
        found = self.filter(*criteria, **keys)
        if len(found) > 1:
            raise RunLookupError(len(found), describe(criteria, keys))
        return found[0] if found else None

    def get(self, *criteria: Any, **keys: Any) -> Run[C, ImplT]:
        """The one run that meets the criteria; ValueError (RunLookupError) for none or several."""
        found = self.filter(*criteria, **keys)
        if len(found) != 1:
            raise RunLookupError(len(found), describe(criteria, keys))
        return found[0]

    def first(self, *criteria: Any, **keys: Any) -> Run[C, ImplT]:
        """The first run that meets the criteria; ValueError (RunLookupError) for none."""
        found = self.filter(*criteria, **keys)
        if not found:
            raise RunLookupError(0, describe(criteria, keys))
        return found[0]

    def last(self, *criteria: Any, **keys: Any) -> Run[C, ImplT]:
        """The last run that meets the criteria; ValueError (RunLookupError) for none."""
        found = self.filter(*criteria, **keys)
        if not found:
            raise RunLookupError(0, describe(criteria, keys))
        return found[-1]

    def sort(self, *keys: str, reverse: bool = False) -> RunCollection[C, ImplT]:  # type: ignore[override]
        """The runs ordered by the keys' values (stable), reversed with `reverse`."""
        if not keys:
            return self
        columns = [self.to_list(key) for key in keys]
        order = sorted(range(len(self)), key=lambda i: [column[i] for column in columns])
        return self[order[::-1] if reverse else order]

    def sample(self, k: int, seed: int | None = None) -> RunCollection[C, ImplT]:
        """`k` runs drawn at random (reproducibly with `seed`)."""
        if not 1 <= k <= len(self):
            raise ValueError(
                f"a sample of {k} runs out of {len(self)}: it must be 1 to {len(self)}"
            )
        rng = random.Random(seed)
        return self[rng.sample(range(len(self)), k)]

    def shuffle(self, seed: int | None = None) -> RunCollection[C, ImplT]:
        return self.sample(len(self), seed)

    def to_frame(
        self,
        *keys: str | tuple[str, Any],
        defaults: dict[str, Any] | None = None,
        **functions: Callable[[Run[C, ImplT]], Any],
    ) -> pl.DataFrame:
        """A column per key (`(key, default)` for a default), then one per
        function of a run, named by its keyword: a value, a list (a list
        column) or a dict (a struct column) per run."""
        defaults = dict(defaults or {})
        names = []
        for key in keys:
            if isinstance(key, tuple):
                defaults[key[0]] = key[1]
                key = key[0]
            names.append(key)
        frame = pl.DataFrame([self.to_series(k, defaults.get(k, MISSING)) for k in names])
        if not functions:
            return frame
        return frame.with_columns(pl.Series(k, list(self.map(f))) for k, f in functions.items())

    def group_by(self, *keys: str) -> GroupBy[C, ImplT]:  # type: ignore[override]
        """The runs by their values of the keys (a value, or a tuple of values
        for several keys), in the order the values first come."""
        columns = [[hashable(v) for v in self.to_list(key)] for key in keys]
        positions: dict[Any, list[int]] = {}
        for i in range(len(self)):
            values = tuple(column[i] for column in columns)
            positions.setdefault(values[0] if len(keys) == 1 else values, []).append(i)
        return GroupBy(keys, {value: self[rows] for value, rows in positions.items()})

    def concat(self, function: Callable[[Run[C, ImplT]], pl.DataFrame], *keys: Any) -> pl.DataFrame:
        """The frames `run.to_frame(function, *keys)` of the runs, one below the other."""
        return pl.concat(run.to_frame(function, *keys) for run in self)

    def eq(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        """A filter: the runs whose values of two keys are equal."""
        return lambda run: bool(
            self.value_of(run, left, default) == self.value_of(run, right, default)
        )

    def ne(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: bool(
            self.value_of(run, left, default) != self.value_of(run, right, default)
        )

    def gt(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: bool(
            self.value_of(run, left, default) > self.value_of(run, right, default)
        )

    def lt(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: bool(
            self.value_of(run, left, default) < self.value_of(run, right, default)
        )

    def ge(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: bool(
            self.value_of(run, left, default) >= self.value_of(run, right, default)
        )

    def le(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: bool(
            self.value_of(run, left, default) <= self.value_of(run, right, default)
        )

    def startswith(self, key: str, prefix: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        """A filter: the runs whose value of `key`, as text, starts with `prefix`."""
        return lambda run: str(self.value_of(run, key, default)).startswith(prefix)

    def endswith(self, key: str, suffix: str, *, default: Any = MISSING) -> Callable[[Any], bool]:
        return lambda run: str(self.value_of(run, key, default)).endswith(suffix)

    def match(
        self, key: str, pattern: str | re.Pattern[str], *, default: Any = MISSING, flags: int = 0
    ) -> Callable[[Any], bool]:
        """A filter: the runs whose value of `key`, as text, matches a regular expression."""
        return lambda run: (
            re.match(pattern, str(self.value_of(run, key, default)), flags) is not None
        )

    def update(self, key: str | tuple[str, ...], value: Any, *, force: bool = False) -> None:
        """`Run.update` of each run."""
        for run in self:
            run.update(key, value, force=force)

    def iterdir(self, relative_dir: str = "") -> Iterator[Path]:
        for run in self:
            yield from run.iterdir(relative_dir)

    def glob(self, pattern: str, relative_dir: str = "") -> Iterator[Path]:
        for run in self:
            yield from run.glob(pattern, relative_dir)


class GroupBy(Generic[C, ImplT]):
    """Runs grouped by keys: a mapping from the keys' values to a
    `RunCollection`, and `agg` to a frame."""

    def __init__(self, by: tuple[str, ...], groups: dict[Any, RunCollection[C, ImplT]]) -> None:
        self.by = by
        self.groups = groups

    def __getitem__(self, key: Any) -> RunCollection[C, ImplT]:
        return self.groups[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __contains__(self, key: Any) -> bool:
        return key in self.groups

    def keys(self) -> KeysView[Any]:
        return self.groups.keys()

    def values(self) -> ValuesView[RunCollection[C, ImplT]]:
        return self.groups.values()

    def items(self) -> ItemsView[Any, RunCollection[C, ImplT]]:
        return self.groups.items()

    def agg(
        self, *keys: str, **functions: Callable[[RunCollection[C, ImplT]], Any]
    ) -> pl.DataFrame:
        """A row per group: the keys' values, a list of each run's value per
        key of `keys`, and a column per function of the group."""
        if len(self.by) == 1:
            frame = pl.DataFrame({self.by[0]: list(self.groups)})
        else:
            frame = pl.DataFrame([dict(zip(self.by, k, strict=True)) for k in self.groups])
        columns = [pl.Series(key, [g.to_list(key) for g in self.groups.values()]) for key in keys]
        columns += [
            pl.Series(k, [f(g) for g in self.groups.values()]) for k, f in functions.items()
        ]
        return frame.with_columns(columns)


def collect_run_dirs(
    run_dirs: list[Path], impl_factory: Callable[..., Any] | None
) -> RunCollection[Any, Any]:
    """The runs in these folders, in this order. The runs of one store are
    read together by `load` (a folder its store lacks is read alone)."""
    from hydraflow.analysis.rundirs import store_beside

    stores = {store_beside(d.resolve().parent.parent) for d in {p.parent for p in run_dirs}}
    if len(stores) != 1:
        return RunCollection(Run(d, impl_factory) for d in run_dirs)
    runs: Runs[Any] = load(tracking_uri=stores.pop(), status=None)
    position = {run_id: i for i, run_id in enumerate(runs.frame["run_id"])}
    rows = [position[d.name] for d in run_dirs if d.name in position]
    if len(rows) != len(run_dirs):
        return RunCollection(Run(d, impl_factory) for d in run_dirs)
    return RunCollection.view(runs.derive(runs.frame[rows]), impl_factory)


def store_uri(run: Run[Any, Any]) -> str:
    if run._runs is not None:
        return run._runs.store_uri
    from hydraflow.analysis.rundirs import store_of

    return store_of(run.run_dir)


def in_bulk(wanted: Any, dtype: pl.DataType) -> bool:
    """Whether the frame's column answers `wanted` as `matches` would."""
    if isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object):
        return False
    if isinstance(wanted, list | set):
        return all(isinstance(v, SCALARS) for v in wanted)
    if isinstance(wanted, tuple):
        return len(wanted) == 2 and all(isinstance(v, SCALARS) for v in wanted)
    return isinstance(wanted, SCALARS)


def matches(value: Any, wanted: Any) -> bool:
    """A value meets a criterion: a function true of it, a list or set that
    holds it, a (low, high) range around it, or an equal value (lists and
    tuples compared as lists)."""
    if callable(wanted):
        return bool(wanted(value))
    wanted = plain(wanted)
    if isinstance(wanted, list | set) and not is_sequence(value):
        return value in wanted
    if isinstance(wanted, tuple) and len(wanted) == 2 and not is_sequence(value):
        low, high = wanted
        return bool(low <= value <= high)
    return bool(as_list(value) == as_list(wanted))


def plain(value: Any) -> Any:
    """An OmegaConf list as a list."""
    from omegaconf import ListConfig

    return list(value) if isinstance(value, ListConfig) else value


def is_sequence(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | dict)


def as_list(value: Any) -> Any:
    return list(value) if is_sequence(value) else value


def hashable(value: Any) -> Any:
    """A group's key: lists become tuples."""
    value = plain(value)
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return str(value)
    return value


def describe(criteria: tuple[Any, ...], keys: dict[str, Any]) -> str:
    parts = [repr(c) for c in criteria] + [f"{k}={v!r}" for k, v in keys.items()]
    return ", ".join(parts) if parts else "(no criteria)"
