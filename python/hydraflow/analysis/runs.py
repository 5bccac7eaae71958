"""`hydraflow.load`, `Runs` and `Run`: the runs of a store as data."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, overload

import polars as pl
from typing_extensions import TypeVar

from hydraflow.analysis import variation
from hydraflow.analysis.filters import column_name, combine, describe
from hydraflow.analysis.frame import BASE_SCHEMA, build
from hydraflow.analysis.reading import METRIC_PREFIX, Store, open_store
from hydraflow.errors import (
    AT_LEAST_ONE,
    FilterError,
    NoRunsWarning,
    RunLookupError,
    user_stacklevel,
)
from hydraflow.store import tracking_uri as resolve_uri
from hydraflow.tables import counted

if TYPE_CHECKING:
    from hydraflow.analysis.collection import RunCollection

# How many of a key's values a message lists.
MAX_LISTED = 10

C = TypeVar("C")
# What a run's `impl_factory` makes; `Run[Config]` leaves it None.
ImplT = TypeVar("ImplT", default=None)
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
# Rows of a notebook's table of runs; `frame` has them all.
HTML_ROWS = 10
REPR_WIDTH = 100


def load(
    experiments: str | Sequence[str] | None = None,
    *,
    tracking_uri: str | os.PathLike[str] | None = None,
    status: str | Sequence[str] | None = "FINISHED",
    config: type[C] | None = None,
) -> Runs[C]:
    """Every run of the matching experiments, typed, as `Runs`.

    `experiments`: a name, a glob pattern (`"job_*"`), a list of them, or None
    for all. `tracking_uri`: the store, resolved as `@hydraflow.main` does: a
    tracking URI, or a path (a `Path` or a string without a scheme) of a
    SQLite file; else MLFLOW_TRACKING_URI, else `mlflow.db` in the current
    directory.
    `status`: a run status, a list, or None for all. `config`: the app's
    dataclass, so that `run.cfg` is an instance of it.

    A SQLite store is read directly, read-only and in bulk; any other URI
    (a tracking server) through MLflow's client, with the same result.
    Deleted runs and deleted experiments are left out.
    """
    patterns = None if experiments is None else texts("experiments", experiments, NAME)
    wanted = statuses(status)
    check_schema(config)
    store = open_store(resolve_uri(tracking_uri, Path.cwd()))
    frame, configs, json_columns = build(store.read(patterns, wanted))
    warn_unmatched(patterns or [], frame, store)
    return Runs(frame, configs, store, config, json_columns=json_columns)


def warn_unmatched(patterns: Sequence[str], frame: pl.DataFrame, store: Store) -> None:
    """A NoRunsWarning for each pattern that names no experiment of the
    store: a typo, or (on the command line) a filter written without its
    `=`. An experiment with no run of the statuses asked for is no mistake."""
    names = frame["experiment"].unique().to_list()
    missed = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if not missed:
        return
    experiments = store.experiments()
    missed = [p for p in missed if not any(fnmatch.fnmatchcase(n, p) for n in experiments)]
    existing = ", ".join(experiments) or "(none)"
    for pattern in missed:
        message = f"no runs of an experiment matching {pattern!r}; the experiments are: {existing}"
        warnings.warn(message, NoRunsWarning, stacklevel=user_stacklevel())


NAME = "an experiment name or glob pattern"


def texts(argument: str, value: object, what: str) -> list[str]:
    """`value`, a text or texts, as a list; a TypeError that says what
    `load` takes for anything else (`load(123)`)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return items
    raise TypeError(f"load: {argument} must be {what}, or a list of them, not {value!r}")


def check_schema(config: object) -> None:
    """`config` is a dataclass (or attrs) class, which OmegaConf takes as a
    schema, or None; a TypeError that says so for anything else
    (`config="seed"`), which would otherwise be ignored until `run.cfg`."""
    if config is None or (isinstance(config, type) and is_structured(config)):
        return
    raise TypeError(
        "load: config must be the app's config class (a @dataclass), "
        f"so that run.cfg is an instance of it; not {config!r}"
    )


def is_structured(cls: type) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(cls) or hasattr(cls, "__attrs_attrs__")


def statuses(status: str | Sequence[str] | None) -> list[str] | None:
    if status is None:
        return None
    upper = [s.upper() for s in texts("status", status, "a run status")]
    if "ALL" in upper:  # as `hydraflow runs --status all`
        return None
    unknown = [s for s in upper if s not in STATUSES]
    if unknown:
        known = ", ".join(STATUSES)
        raise FilterError(f"unknown run status {unknown[0]!r}; a status is one of {known}, or all")
    return upper


class Runs(Generic[C]):
    """Runs as a polars frame (`.frame`) and as `Run` objects.

    Every method returns new `Runs` (or a frame); none changes this one.
    `filter`, `exclude`, `get`, `try_get`, `first` and `last` take the same
    criteria: `key=value` (equal), `key=[a, b]` (any of), `key=(low, high)`
    (inclusive range, None for an open end), `key=callable` (true for the
    value); `__` stands for a dot (`model__depth=3`); positional criteria are
    polars expressions or functions of a `Run`.
    """

    # How a run of these runs shows itself (see `Run.__repr__`).
    SHORT_RUN_REPR = False

    def __init__(
        self,
        frame: pl.DataFrame,
        configs: pl.DataFrame,
        store: Store,
        config: type[C] | None,
        *,
        json_columns: frozenset[str] = frozenset(),
    ) -> None:
        self._frame = frame
        self._json_columns = json_columns
        self._configs = configs
        self._store = store
        self._config = config
        self._texts: dict[str, str] | None = None
        # The runs as loaded, for what a run varies within its experiment.
        self._loaded = frame
        self._varying_by_experiment: dict[str, list[str]] = {}
        # Shared by the runs derived from these: each run's one `Run`, so
        # that its `impl` is made once and a config it was given stays.
        self._objects: dict[str, Run[C, Any]] = {}
        self._impl_factory: Callable[..., Any] | None = None
        self._changed = [False]

    @property
    def frame(self) -> pl.DataFrame:
        """One row per run: run_id, experiment, status, start_time,
        end_time, artifact_dir, a column per config key (dotted), a column
        `choice.<group>` per config group, then `metrics.<name>` (latest)."""
        return self._frame

    @property
    def json_columns(self) -> frozenset[str]:
        """The config keys whose values have different types across the runs
        loaded (a bool and an int, a list and a text, ...): their columns hold
        each value's JSON text (`true`, `500`, `"auto"`, `[64,64]`), and
        `filter` matches them by value (`warmup=True`, `layers="auto"`)."""
        return self._json_columns

    @property
    def store_uri(self) -> str:
        """The tracking URI the runs were read from."""
        return self._store.uri

    def derive(self, frame: pl.DataFrame) -> Runs[C]:
        """Runs of the same kind over other rows, sharing every cache."""
        runs = object.__new__(type(self))
        runs.__dict__.update(self.__dict__)
        runs._frame = frame
        return runs

    def run_at(self, row: dict[str, Any]) -> Run[C, Any]:
        """The one `Run` of a row."""
        run = self._objects.get(row["run_id"])
        if run is None:
            run = Run.of_row(row, self, self._impl_factory)
            self._objects[row["run_id"]] = run
        return run

    def updated(self) -> None:
        """A run's config was changed (`Run.update`): the frame no longer says
        all of it."""
        self._changed[0] = True

    def __len__(self) -> int:
        return self._frame.height

    def __iter__(self) -> Iterator[Run[C, Any]]:
        for row in self._frame.iter_rows(named=True):
            yield self.run_at(row)

    @overload
    def __getitem__(self, index: int) -> Run[C, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Runs[C]: ...
    def __getitem__(self, index: int | slice) -> Run[C, Any] | Runs[C]:
        if isinstance(index, slice):
            return self.derive(self._frame[index])
        if not -len(self) <= index < len(self):
            raise IndexError(f"run index {index} out of range for {len(self)} runs")
        return self.run_at(self._frame.row(index, named=True))

    def __repr__(self) -> str:
        experiments = self._frame["experiment"].unique(maintain_order=True).to_list()
        return f"Runs({counted(len(self), 'run')} of {', '.join(experiments) or 'no experiment'})"

    def _repr_html_(self) -> str:
        """In a notebook: the count, what every run shares, and a table of
        what varies (the first rows)."""
        from html import escape

        shared = " ".join(f"{k}={v!r}" for k, v in self.constants().items())
        same = f"<br>the same in every run: {escape(shared)}" if shared else ""
        caption = f"<p>{escape(repr(self))}{same}</p>"
        table: str = self.varying_frame().head(HTML_ROWS)._repr_html_()
        return caption + table

    def varying(self, *, implied: bool = False) -> list[str]:
        """The settings (config keys, `choice.<group>`, experiment, status)
        whose value differs between these runs. Unless `implied`, a key of a
        config group that changes only with the group's option (`model.depth`
        with `choice.model`) is left out."""
        return variation.varying(self._frame, implied=implied)

    def constants(self) -> dict[str, Any]:
        """The settings every one of these runs shares, with their value."""
        return variation.constants(self._frame)

    def varying_frame(self) -> pl.DataFrame:
        """The frame narrowed to what a person compares: run_id, the settings
        that vary (`varying()`), the results (`value`, `stopped`) and the metrics."""
        return self._frame.select(variation.table_columns(self._frame))

    def varying_in_experiment(self, experiment: str) -> list[str]:
        """What the loaded runs of `experiment` vary (choices' keys included)."""
        if experiment not in self._varying_by_experiment:
            runs = self._loaded.filter(pl.col("experiment") == experiment)
            self._varying_by_experiment[experiment] = variation.varying(runs)
        return self._varying_by_experiment[experiment]

    def matching(self, predicates: Sequence[Any], criteria: dict[str, Any], keep: bool) -> Runs[C]:
        """The runs that meet every criterion (`keep`), or all the others: a
        run lacking a filtered column meets no criterion on it."""
        expr = combine(self._frame, criteria, self._json_columns)
        for item in predicates:
            expr = expr & self.predicate(item)
        expr = expr.fill_null(False)
        try:
            return self.derive(self._frame.filter(expr if keep else ~expr))
        except pl.exceptions.PolarsError as error:
            reason = str(error).splitlines()[0]
            message = f"cannot filter on {describe(predicates, criteria)}: {reason}"
            raise FilterError(message) from None

    def predicate(self, item: Any) -> pl.Expr:
        if isinstance(item, pl.Expr):
            return item
        if callable(item):
            return pl.lit(pl.Series([bool(item(run)) for run in self], dtype=pl.Boolean))
        raise FilterError(f"a filter is a polars expression or a function of a Run, not {item!r}")

    def filter(self, *predicates: Any, **criteria: Any) -> Runs[C]:
        """The runs that meet every criterion; a NoRunsWarning when runs
        were there and none does (`get`/`try_get` say so their own way)."""
        found = self.matching(predicates, criteria, keep=True)
        if len(self) and not len(found):
            message = f"no run meets {describe(predicates, criteria)}{self.values_of(criteria)}"
            warnings.warn(message, NoRunsWarning, stacklevel=user_stacklevel())
        return found

    def values_of(self, keys: Iterable[str]) -> str:
        """The values the filtered keys have, to show what a filter missed."""
        shown = []
        for key in keys:
            name = column_name(key, self._frame.columns)
            values = self._frame[name].unique().sort(nulls_last=True)
            listed = ", ".join(str(v) for v in values.head(MAX_LISTED).to_list())
            more = f", ... ({len(values)} values)" if len(values) > MAX_LISTED else ""
            shown.append(f"{name} is {listed}{more}")
        return f" ({'; '.join(shown)})" if shown else ""

    def exclude(self, *predicates: Any, **criteria: Any) -> Runs[C]:
        """The runs that `filter` with the same criteria leaves out."""
        return self.matching(predicates, criteria, keep=False)

    def get(self, *predicates: Any, **criteria: Any) -> Run[C, Any]:
        """The one run that meets the criteria; RunLookupError for none or several."""
        found = self.matching(predicates, criteria, keep=True)
        if len(found) != 1:
            raise RunLookupError(len(found), describe(predicates, criteria))
        return found[0]

    def try_get(self, *predicates: Any, **criteria: Any) -> Run[C, Any] | None:
        """The one run that meets the criteria, None for none; RunLookupError for several."""
        found = self.matching(predicates, criteria, keep=True)
        if len(found) > 1:
            raise RunLookupError(len(found), describe(predicates, criteria))
        return found[0] if len(found) else None

    def first(self, *predicates: Any, **criteria: Any) -> Run[C, Any]:
        """The earliest run (in the current order) that meets the criteria."""
        found = self.matching(predicates, criteria, keep=True) if predicates or criteria else self
        if not len(found):
            raise RunLookupError(0, describe(predicates, criteria), AT_LEAST_ONE)
        return found[0]

    def last(self, *predicates: Any, **criteria: Any) -> Run[C, Any]:
        """The latest run (in the current order) that meets the criteria."""
        found = self.matching(predicates, criteria, keep=True) if predicates or criteria else self
        if not len(found):
            raise RunLookupError(0, describe(predicates, criteria), AT_LEAST_ONE)
        return found[-1]

    def columns(self, keys: Sequence[Any]) -> list[Any]:
        return [column_name(k, self._frame.columns) if isinstance(k, str) else k for k in keys]

    def sort(self, *keys: Any, descending: bool | Sequence[bool] = False) -> Runs[C]:
        """The runs ordered by columns (`__` for dots) or expressions."""
        frame = self._frame.sort(self.columns(keys), descending=descending, maintain_order=True)
        return self.derive(frame)

    def group_by(self, *keys: Any, maintain_order: bool = True) -> pl.dataframe.group_by.GroupBy:
        """`frame.group_by` (polars semantics), keys with `__` for dots."""
        return self._frame.group_by(self.columns(keys), maintain_order=maintain_order)

    def to_pandas(self) -> Any:
        """The frame as a pandas DataFrame (needs pandas and pyarrow: the
        `hydraflow[pandas]` extra)."""
        return self._frame.to_pandas()

    def history(self, *metrics: str, columns: Sequence[str] | bool = ()) -> pl.DataFrame:
        """Every logged step of these metrics (all when none are named), one
        row per step: run_id, metric, step, timestamp, value, then `columns`
        of the run's row (`True`: the settings that vary), ready to plot one
        curve per setting."""
        names = [m.removeprefix(METRIC_PREFIX) for m in metrics]
        history = self._store.history(self._frame["run_id"].to_list(), names)
        keys = self.varying() if columns is True else self.columns(list(columns or ()))
        rows = self._frame.select("run_id", *keys).with_row_index("order")
        return (
            history.join(rows, on="run_id")
            .sort("order", "metric", "step", "timestamp")
            .drop("order")
            .with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC")))
        )

    def config_text(self, run_id: str) -> str | None:
        if self._texts is None:
            self._texts = dict(self._configs.iter_rows())
        return self._texts.get(run_id)


class RunInfo:
    """Where a run is and what it is called: `run_dir` (the run's folder,
    `mlruns/<experiment id>/<run id>`), `run_id` and `job_name` (the Hydra
    job's name, which is the MLflow experiment's)."""

    def __init__(self, run: Run[Any, Any]) -> None:
        self._run = run

    @property
    def run_dir(self) -> Path:
        return self._run.run_dir

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def job_name(self) -> str:
        return self._run.experiment

    def __repr__(self) -> str:
        return f"RunInfo(run_dir={self.run_dir!r})"


class Run(Generic[C, ImplT]):
    """One run: its config (`cfg`), where it is (`info`), an object of the
    user's made from its artifacts (`impl`), and its row of the runs' frame.

    `Run(run_dir, impl_factory)` (or `Run.load`) opens the run in a folder
    `mlruns/<experiment id>/<run id>`, as the published HydraFlow does;
    `Run[Config, Impl]` only types it. `hydraflow.load` and `Run.load` of many
    folders give runs that read their store once, in bulk.

    `impl_factory(artifacts_dir)` or `impl_factory(artifacts_dir, cfg)` makes
    `impl` on first use.
    """

    _row: dict[str, Any] | None
    _runs: Runs[C] | None

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        impl_factory: Callable[..., ImplT] | None = None,
    ) -> None:
        self._row = None
        self._runs = None
        self._json_columns: frozenset[str] = frozenset()
        self._folder: Path | None = Path(run_dir)
        self.impl_factory = impl_factory
        self.forget()

    @classmethod
    def of_row(cls, row: dict[str, Any], runs: Runs[C], impl_factory: Any = None) -> Run[C, ImplT]:
        """The run of a row of `runs.frame`."""
        run: Run[C, ImplT] = cls.__new__(cls)
        run._row = row
        run._runs = runs
        run._folder = None
        run.impl_factory = impl_factory
        run.forget()
        return run

    def forget(self) -> None:
        self._cfg: Any = None
        self._impl: Any = MISSING
        self.info = RunInfo(self)

    @overload
    @classmethod
    def load(  # type: ignore[overload-overlap]
        cls, run_dir: str | os.PathLike[str], impl_factory: Callable[..., ImplT] | None = None
    ) -> Run[C, ImplT]: ...
    @overload
    @classmethod
    def load(
        cls,
        run_dir: Iterable[str | os.PathLike[str]],
        impl_factory: Callable[..., ImplT] | None = None,
    ) -> RunCollection[C, ImplT]: ...
    @classmethod
    def load(
        cls,
        run_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        impl_factory: Callable[..., ImplT] | None = None,
    ) -> Run[C, ImplT] | RunCollection[C, ImplT]:
        """The run in a folder, or a `RunCollection` of the runs in several
        (their stores read once each, in bulk)."""
        if isinstance(run_dir, str | os.PathLike):
            return cls(run_dir, impl_factory)
        from hydraflow.analysis.collection import collect_run_dirs

        return collect_run_dirs([Path(d) for d in run_dir], impl_factory)

    @property
    def row(self) -> dict[str, Any]:
        """The run's row of the runs' frame (a run opened from its folder
        reads it from its store on first use)."""
        if self._row is None:
            from hydraflow.analysis.rundirs import row_of

            self._row, self._json_columns = row_of(self.run_dir)
        return self._row

    @property
    def json_columns(self) -> frozenset[str]:
        """The keys of `row` that hold JSON text (`Runs.json_columns`)."""
        if self._runs is not None:
            return self._runs.json_columns
        self.row  # noqa: B018 (read from the store on first use, with its JSON-text keys)
        return self._json_columns

    @property
    def run_id(self) -> str:
        if self._folder is not None:
            return self._folder.name
        run_id: str = self.row["run_id"]
        return run_id

    @property
    def run_dir(self) -> Path:
        """The run's folder: its artifact directory's parent."""
        if self._folder is not None:
            return self._folder
        return self.artifact_dir.parent

    @property
    def experiment(self) -> str:
        experiment: str = self.row["experiment"]
        return experiment

    @property
    def status(self) -> str:
        status: str = self.row["status"]
        return status

    @property
    def start_time(self) -> datetime | None:
        start: datetime | None = self.row["start_time"]
        return start

    @property
    def end_time(self) -> datetime | None:
        end: datetime | None = self.row["end_time"]
        return end

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric the run logged."""
        return {
            key.removeprefix(METRIC_PREFIX): value
            for key, value in self.row.items()
            if key.startswith(METRIC_PREFIX) and value is not None
        }

    @property
    def cfg(self) -> C:
        """The run's config: an instance of `load(config=...)`'s dataclass,
        else an OmegaConf DictConfig; for a run opened the published way (from
        its folder, or in a RunCollection) its `.hydra/config.yaml` as is."""
        if self._cfg is None:
            self._cfg = self.make_cfg()
        cfg: C = self._cfg
        return cfg

    def make_cfg(self) -> Any:
        from omegaconf import OmegaConf

        if self._runs is None or self._runs.SHORT_RUN_REPR:
            # Opened the published way: the file Hydra wrote, as the published
            # tool reads it (keys in the config's order, interpolations kept).
            path = self.path(".hydra/config.yaml")
            if path.is_file() or self._runs is None:
                return OmegaConf.load(path) if path.is_file() else OmegaConf.create()
        assert self._runs is not None
        text = self._runs.config_text(self.run_id)
        conf = OmegaConf.create(json.loads(text) if text else {})
        schema = self._runs._config
        if schema is None:
            return conf
        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), conf))
        except Exception as error:
            message = f"run {self.run_id}: its config does not fit {schema.__name__}: {error}"
            raise ValueError(message) from None

    @property
    def impl(self) -> ImplT:
        """`impl_factory(artifacts_dir)`, or `impl_factory(artifacts_dir, cfg)`
        when it takes two arguments; made once (None without a factory)."""
        if self._impl is MISSING:
            self._impl = self.make_impl()
        impl: ImplT = self._impl
        return impl

    def make_impl(self) -> Any:
        if self.impl_factory is None:
            return None
        import inspect

        folder = self.artifact_dir
        if len(inspect.signature(self.impl_factory).parameters) == 1:
            return self.impl_factory(folder)
        return self.impl_factory(folder, self.cfg)

    def get(self, key: str, default: Any = MISSING) -> Any:
        """A value by key (`__` for dots), looked for in the config, then in
        `impl`, `info` and the run's attributes, then in its row (`metrics.x`,
        `status`, ...); else `default` (a function of the run is called), else
        AttributeError. `"cfg"`, `"impl"`, `"info"` give those objects."""
        key = key.replace("__", ".")
        value = select(self.cfg, key)
        if value is not MISSING:
            return value
        for source in (self.impl, self.info, self):
            value = getattr(source, key, MISSING)
            if value is not MISSING and not callable(value):
                return value
        if key in self.row:
            return self.row[key]
        if default is not MISSING:
            return default(self) if callable(default) else default
        raise AttributeError(f"run {self.run_id} has no key {key!r}")

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def update(self, key: str | tuple[str, ...], value: Any, *, force: bool = False) -> None:
        """Sets config values the run lacks (all of them with `force`): one
        dotted key, or a tuple of keys with an iterable of values; `value`
        may be a function of the run. The store is left as it is."""
        from omegaconf import OmegaConf

        keys = [key] if isinstance(key, str) else list(key)
        keys = [k.replace("__", ".") for k in keys]
        absent = [k for k in keys if select(self.cfg, k) is MISSING]
        if not force and not absent:
            return
        given = value(self) if callable(value) else value
        if isinstance(key, str):
            values = [given]
        elif isinstance(given, Iterable) and not isinstance(given, str):
            values = list(given)
        else:
            raise TypeError(f"{given!r} is not an iterable of values for {key!r}")
        for name, item in zip(keys, values, strict=True):
            if force or name in absent:
                OmegaConf.update(self.cfg, name, item, force_add=True)  # type: ignore[arg-type]
        if self._runs is not None:
            self._runs.updated()

    def lit(self, key: str, default: Any = MISSING, *, dtype: Any = None) -> pl.Expr:
        """`get(key, default)` as a polars literal named `key`."""
        return pl.lit(self.get(key, default), dtype).alias(key)

    def to_frame(
        self, function: Callable[[Run[C, ImplT]], pl.DataFrame], *keys: str | tuple[str, Any]
    ) -> pl.DataFrame:
        """`function(run)` with a column per key (`(key, default)` for a
        default) holding the run's value."""
        literals = [self.lit(k) if isinstance(k, str) else self.lit(k[0], k[1]) for k in keys]
        return function(self).with_columns(literals)

    def to_frame_impl(
        self, function: Callable[[ImplT], pl.DataFrame], *keys: str | tuple[str, Any]
    ) -> pl.DataFrame:
        """`to_frame` of a function of the run's `impl`."""
        return self.to_frame(lambda run: function(run.impl), *keys)

    def to_dict(self, *, flatten: bool = True) -> dict[str, Any]:
        """The config as a dict, its keys dotted unless not `flatten`."""
        from omegaconf import OmegaConf

        cfg = self.cfg
        tree = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else asdict(cfg)  # type: ignore[call-overload]
        if not isinstance(tree, dict):
            raise TypeError(f"run {self.run_id}: its config is not a mapping")
        return dict(flat_items(tree, "")) if flatten else {str(k): v for k, v in tree.items()}

    @property
    def artifact_dir(self) -> Path:
        """The local directory of the run's artifacts (ValueError when they are
        not on this file system)."""
        if self._folder is not None:
            return self._folder / "artifacts"
        folder = self.row["artifact_dir"]
        if folder is None:
            raise ValueError(f"run {self.run_id} keeps its artifacts off this file system")
        return Path(folder)

    def path(
        self,
        relative_path: str | os.PathLike[str] = "",
        *,
        relative: str | os.PathLike[str] | None = None,
    ) -> Path:
        """A path inside the artifact directory (`relative_path`, the
        published name; `relative=`, this package's earlier one, too)."""
        if relative is not None:
            if relative_path:
                raise TypeError("path: give relative_path or relative, not both")
            relative_path = relative
        return self.artifact_dir / relative_path

    def glob(self, pattern: str, relative_dir: str = "") -> Iterator[Path]:
        """The artifacts matching a glob pattern (in `relative_dir`), in
        sorted order; an iterator, as the published tool's, so
        `next(run.glob(...))` takes the first."""
        yield from sorted(self.path(relative_dir).glob(pattern))

    def iterdir(self, relative_dir: str = "") -> Iterator[Path]:
        """The entries of the artifact directory (or of `relative_dir` in it)."""
        return self.path(relative_dir).iterdir()

    @contextlib.contextmanager
    def chdir(self, relative_dir: str = "") -> Iterator[Path]:
        """Works inside the artifact directory (or `relative_dir` in it) for
        the block, then returns."""
        folder = self.path(relative_dir)
        with contextlib.chdir(folder):
            yield folder

    def config_items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self.row.items():
            if key not in BASE_SCHEMA and not key.startswith(METRIC_PREFIX) and value is not None:
                yield key, value

    def __repr__(self) -> str:
        """As the published HydraFlow's (`Run[Impl]('run id')`) for a run
        opened from its folder or in a RunCollection; else the values this
        run's experiment varies first, then the rest, cut to a line."""
        if self._runs is None or self._runs.SHORT_RUN_REPR:
            factory = self.impl_factory
            impl = f"[{factory.__name__}]" if isinstance(factory, type) else ""
            return f"{type(self).__name__}{impl}({self.run_id!r})"
        first = self._runs.varying_in_experiment(self.experiment)
        items = dict(self.config_items())
        ordered = [k for k in first if k in items] + [k for k in items if k not in first]
        config = " ".join(f"{k}={items[k]!r}" for k in ordered)
        head = f"Run({self.experiment} {self.run_id[:8]} {self.status}"
        room = REPR_WIDTH - len(head) - 2
        if len(config) > room:
            config = config[: room - 3] + "..."
        return f"{head} {config})" if config else f"{head})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)


def select(cfg: Any, key: str) -> Any:
    """The value at a dotted key of a config (DictConfig or dataclass), or MISSING."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.select(cfg, key, default=MISSING)
    node = cfg
    for part in key.split("."):
        node = node.get(part, MISSING) if isinstance(node, dict) else getattr(node, part, MISSING)
        if node is MISSING:
            return MISSING
    return node


def flat_items(tree: dict[Any, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
