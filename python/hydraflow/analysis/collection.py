"""`RunCollection`: the published HydraFlow's collection of runs, over `Runs`.

It is a `Collection` of `Run`s (the published generic base, in
`sequence.py`) and a `Runs`: the published semantics (`filter` by keys of
`Run.get`, `group_by` into collections, `to_frame` of keys and functions),
so a user's analysis code of the published tool runs unchanged, and every
`Runs` method (`frame`, `history`, ...). A key that is a config column with a
value in every run is read from the frame, in bulk; any other key, and every
function, go run by run through `Run.get`, as the published tool does.
"""

from __future__ import annotations

import glob
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING
from numbers import Integral
from pathlib import Path
from typing import Any, Generic, Self, overload

import polars as pl

from hydraflow.analysis.filters import condition
from hydraflow.analysis.frame import BASE_SCHEMA
from hydraflow.analysis.layout import typed_series
from hydraflow.analysis.reading import CHOICE_PREFIX, METRIC_PREFIX, open_store
from hydraflow.analysis.runs import C, ImplT, Run, Runs, load
from hydraflow.analysis.sequence import Collection, Getter, matches
from hydraflow.errors import EXACTLY_ONE, ItemLookupError, RunLookupError

# Columns of the frame that are not config keys.
NOT_CONFIG = (*BASE_SCHEMA, "stopped", "value")


class RunCollection(Runs[C], Collection[Run[C, ImplT]], Generic[C, ImplT]):
    """Runs as the published HydraFlow's `RunCollection`: a `Collection` of
    `Run` (index, slice, iterate, `len`), with `filter`, `get`, `first`,
    `last`, `to_frame`, `group_by` and more taking keys of `Run.get`.

    `RunCollection(items)` collects `Run` objects; `Run.load(run_dirs, Impl)`
    collects the runs in folders, reading their store once. `get` replaces
    `Run.get` as the way a key's value is found.
    """

    SHORT_RUN_REPR = True

    def __init__(
        self,
        items: Iterable[Run[Any, Any]] | None = None,
        get: Getter | None = None,
        *,
        runs: Iterable[Run[Any, Any]] | None = None,
    ) -> None:
        # `items` is the published name; `runs=` this package's earlier one.
        if items is not None and runs is not None:
            raise TypeError("RunCollection: give items or runs, not both")
        items = list(items if items is not None else runs or ())
        frame, json_columns = rows_frame(items)
        configs = pl.DataFrame(schema={"run_id": pl.String, "config": pl.String})
        store = open_store(store_uri(items[0])) if items else None
        super().__init__(frame, configs, store, None, json_columns=json_columns)  # type: ignore[arg-type]
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

    __repr__ = Collection.__repr__
    __bool__ = Collection.__bool__

    def select(self, positions: Sequence[int]) -> Self:
        return self.derive(self._frame[list(positions)])  # type: ignore[return-value]

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
        if isinstance(index, slice):
            return Runs.__getitem__(self, index)
        if isinstance(index, Integral):  # an int, or NumPy's
            return Runs.__getitem__(self, operator.index(index))
        return self.select([int(i) for i in index])

    def __iter__(self) -> Iterator[Run[C, ImplT]]:
        return Runs.__iter__(self)

    def __len__(self) -> int:
        return Runs.__len__(self)

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
        if not is_config(name) or name in self._json_columns:
            return None  # JSON text: each run's value is read as it is
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

    def series_mask(self, criterion: Any) -> pl.Series:
        """Which runs meet one criterion of `filter`."""
        if isinstance(criterion, pl.Expr):
            return self._frame.select(criterion.fill_null(False)).to_series()
        if callable(criterion):
            return pl.Series([bool(criterion(run)) for run in self], dtype=pl.Boolean)
        if isinstance(criterion, tuple):
            key, wanted = criterion
            return self.key_series(key, wanted)
        flags = list(criterion)
        if len(flags) != len(self):
            raise ValueError(f"a mask of {len(flags)} values for {len(self)} runs")
        return pl.Series([bool(flag) for flag in flags], dtype=pl.Boolean)

    def key_series(self, key: str, wanted: Any) -> pl.Series:
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
            found = found.derive(found._frame.filter(found.series_mask(criterion)))
        return found

    def exclude(self, *criteria: Any, **keys: Any) -> RunCollection[C, ImplT]:
        """The runs that meet none of the criteria of `filter`."""
        kept = self
        for criterion in (*criteria, *keys.items()):
            kept = kept.derive(kept._frame.filter(~kept.series_mask(criterion)))
        return kept

    def derive(self, frame: pl.DataFrame) -> RunCollection[C, ImplT]:
        collection: RunCollection[C, ImplT] = super().derive(frame)  # type: ignore[assignment]
        return collection

    # Runs has these with its own (polars) semantics; the published ones are Collection's.
    try_get = Collection.try_get
    get = Collection.get
    first = Collection.first
    last = Collection.last
    sort = Collection.sort  # type: ignore[assignment]
    group_by = Collection.group_by  # type: ignore[assignment]

    @staticmethod
    def lookup_error(count: int, criteria: str, expected: str = EXACTLY_ONE) -> ItemLookupError:
        return RunLookupError(count, criteria, expected)

    def concat(self, function: Callable[[Run[C, ImplT]], pl.DataFrame], *keys: Any) -> pl.DataFrame:
        """The frames `run.to_frame(function, *keys)` of the runs, one below the other."""
        return pl.concat(run.to_frame(function, *keys) for run in self)

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


def collect_run_dirs(
    run_dirs: list[Path], impl_factory: Callable[..., Any] | None
) -> RunCollection[Any, Any]:
    """The runs in these folders, in this order. The runs of one store are
    read together by `load` (a folder its store lacks is read alone)."""
    from hydraflow.analysis.rundirs import store_beside

    # A run's folder is TRACKING_DIR/EXPERIMENT_ID/RUN_ID: the store is beside TRACKING_DIR.
    experiment_dirs = {p.parent for p in run_dirs}
    stores = {store_beside(d.resolve().parent) for d in experiment_dirs}
    if len(stores) != 1:
        return RunCollection(Run(d, impl_factory) for d in run_dirs)
    uri = stores.pop()
    # Only their experiments' runs: a key's type comes from the runs asked for.
    names = experiments_of(uri, run_dirs)
    patterns = None if names is None else [glob.escape(name) for name in names]
    runs: Runs[Any] = load(patterns, tracking_uri=uri, status=None)
    position = {run_id: i for i, run_id in enumerate(runs.frame["run_id"])}
    rows = [position[d.name] for d in run_dirs if d.name in position]
    if len(rows) != len(run_dirs):
        return RunCollection(Run(d, impl_factory) for d in run_dirs)
    return RunCollection.view(runs.derive(runs.frame[rows]), impl_factory)


def experiments_of(uri: str, run_dirs: Sequence[Path]) -> list[str] | None:
    """The names of the experiments whose folders hold these run folders
    (None when one is no experiment's folder of the store)."""
    from hydraflow.analysis.rundirs import local_experiment_folder

    named = {}
    store = open_store(uri)
    for name, location in store.experiment_locations():
        folder = local_experiment_folder(store, location)
        if folder is not None:
            named[folder.resolve()] = name
    names = [named.get(d.resolve().parent) for d in run_dirs]
    if any(name is None for name in names):
        return None
    return sorted({name for name in names if name is not None})


def rows_frame(runs: Sequence[Run[Any, Any]]) -> tuple[pl.DataFrame, frozenset[str]]:
    """The runs' rows as one frame, each config key typed by the rule of
    `load` over these runs (runs of several loads may type a key apart),
    and the config columns that hold JSON text."""
    if not runs:
        return pl.DataFrame(schema=BASE_SCHEMA), frozenset()
    rows = [run_values(run) for run in runs]
    names = list(dict.fromkeys(name for row in rows for name in row))
    config = [n for n in names if is_config(n)]
    others = [{n: v for n, v in row.items() if not is_config(n)} for row in rows]
    frame = pl.from_dicts(others, infer_schema_length=None)
    json_columns = set()
    for name in config:
        series, as_json = typed_series(name, [row.get(name) for row in rows])
        frame = frame.with_columns(series)
        if as_json:
            json_columns.add(name)
    return frame.select(names), frozenset(json_columns)


def run_values(run: Run[Any, Any]) -> dict[str, Any]:
    """The run's row with the values its JSON-text columns hold."""
    texts = run.json_columns
    return {
        name: json.loads(value) if name in texts and value is not None else value
        for name, value in run.row.items()
    }


def is_config(name: str) -> bool:
    return name not in NOT_CONFIG and not name.startswith((METRIC_PREFIX, CHOICE_PREFIX, "value."))


def store_uri(run: Run[Any, Any]) -> str:
    if run._runs is not None:
        return run._runs.store_uri
    from hydraflow.analysis.rundirs import store_of

    return store_of(run.run_dir)


def in_bulk(wanted: Any, dtype: pl.DataType) -> bool:
    """Whether the frame's column answers `wanted` as `matches` would: only
    values of the column's own kind (the column's cast would make 1.5 or "1"
    an integer 1, and a text against numbers an error)."""
    if isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object):
        return False
    if isinstance(wanted, list | set):
        return all(fits(v, dtype) for v in wanted)
    if isinstance(wanted, tuple):
        return len(wanted) == 2 and all(v is None or fits(v, dtype) for v in wanted)
    return fits(wanted, dtype)


def fits(value: Any, dtype: pl.DataType) -> bool:
    """A value the column holds as it is: a bool in a boolean column, an int
    in an integer one, a number in a float one, a text in a text one."""
    if isinstance(value, bool):
        return dtype == pl.Boolean
    if isinstance(value, int):
        return dtype.is_integer() or dtype.is_float()
    if isinstance(value, float):
        return dtype.is_float()
    if isinstance(value, str):
        return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    return False
