"""From the tables a store gives to one typed frame, one row per run.

Configs come from the `hydraflow.config` tag: compact JSON that polars
decodes in bulk, so every key keeps its type (int, float, bool, str, list)
without reading one file per run; a key whose values have different types
across the runs keeps them as JSON text (the rule is in `layout.py`). Runs
without the tag (older runs, other tools) get the same JSON rebuilt from their
params, whose text is parsed back to types, or from their `.hydra/config.yaml`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl

from hydraflow._core import json_representatives
from hydraflow.analysis.layout import Layout, python_columns, typed_series
from hydraflow.analysis.reading import RUN_SCHEMA, Tables, experiment_folder
from hydraflow.mlflow_schema import MAX_PARAM_LENGTH

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

TIME = pl.Datetime("ms", "UTC")
BASE_SCHEMA: dict[str, Any] = {
    "run_id": pl.String,
    "experiment": pl.String,
    "status": pl.String,
    "start_time": TIME,
    "end_time": TIME,
    "artifact_dir": pl.String,
}


def build(tables: Tables) -> tuple[pl.DataFrame, pl.DataFrame, frozenset[str]]:
    """The frame (sorted by start time), each run's config as JSON, and the
    config columns that hold JSON text (keys whose values clash)."""
    runs = tables.runs
    base = base_columns(runs, tables.home)
    configs = runs.select("run_id", with_fallbacks(tables, base, runs["config"]))
    # Choices and metrics that only runs outside the selection have are left out.
    extra = runs.select(c for c in runs.columns if c not in RUN_SCHEMA)
    extra = extra.select(c.name for c in extra.iter_columns() if c.null_count() < len(c))
    outcome, json_values = outcome_columns(runs["value"], runs["stopped"])
    config, json_columns = config_columns(configs["config"])
    result = pl.concat([base, outcome, config, extra], how="horizontal")
    order = result.with_row_index("row").sort("start_time", "run_id", nulls_last=True)["row"]
    return result[order], configs[order], json_columns | json_values


def with_fallbacks(tables: Tables, base: pl.DataFrame, configs: pl.Series) -> pl.Series:
    """The config tags, with JSON rebuilt for the runs without one."""
    if not configs.null_count():
        return configs
    rebuilt = fallback_configs(tables, base.filter(configs.is_null()))
    texts = [
        rebuilt.get(i) if t is None else t for i, t in zip(base["run_id"], configs, strict=True)
    ]
    return pl.Series("config", texts, dtype=pl.String)


def base_columns(runs: pl.DataFrame, home: Path | None = None) -> pl.DataFrame:
    # Cast: a store with no run matching gives columns polars typed by default.
    folders = relocated(artifact_dirs(runs["artifact_uri"]), home)
    return runs.select(
        pl.col("run_id").cast(pl.String),
        pl.col("experiment").cast(pl.String),
        pl.col("status").cast(pl.String),
        pl.col("start_time").cast(TIME),
        pl.col("end_time").cast(TIME),
        folders.alias("artifact_dir"),
    )


# A run's artifact folder as MLflow lays it out is EXPERIMENT_FOLDER + this.
RUN_ARTIFACTS = r"/[^/]+/artifacts$"


def relocated(folders: pl.Series, home: Path | None) -> pl.Series:
    """The artifact folders in the experiment folders a moved or copied
    store keeps them in (`experiment_folder`; null where none is on this
    machine), each experiment's folder looked at once."""
    if home is None:
        return folders
    frame = pl.DataFrame({"old": folders}).with_columns(
        experiment=pl.col("old").str.replace(RUN_ARTIFACTS, "")
    )
    laid_out = frame.filter(pl.col("experiment") != pl.col("old"))
    moved = {}
    for recorded in laid_out["experiment"].unique().to_list():
        found = experiment_folder(Path(recorded), home)
        if found is None or str(found) != recorded:
            moved[recorded] = None if found is None else str(found)
    if not moved:
        return folders
    experiment = pl.col("experiment")
    run_part = pl.col("old").str.slice(experiment.str.len_chars())
    new = experiment.replace_strict(moved, default=None, return_dtype=pl.String) + run_part
    is_moved = experiment.is_in(list(moved)) & (experiment != pl.col("old"))
    return (
        frame.select(pl.when(is_moved).then(new).otherwise("old")).to_series().alias(folders.name)
    )


def outcome_columns(values: pl.Series, stopped: pl.Series) -> tuple[pl.DataFrame, set[str]]:
    """`stopped` (when a run was stopped early) and the app's return value:
    `value`, or `value.0`, `value.1`, ... for a tuple (several objectives);
    with the names of those that hold JSON text."""
    columns = [] if stopped.is_null().all() else [stopped.is_not_null().alias("stopped")]
    as_json: set[str] = set()
    if not values.is_null().all():
        for series, is_json in value_columns(values):
            columns.append(series)
            if is_json:
                as_json.add(series.name)
    return pl.DataFrame(columns), as_json


def value_columns(texts: pl.Series) -> Iterator[tuple[pl.Series, bool]]:
    """The `hydraflow.value` tags decoded (by Python: NaN and infinities are
    values too), each column typed by the rule of `layout`, or (True) JSON
    text. A tuple is not a clash with a scalar but another shape of result:
    scalars go to `value`, tuples to `value.0`, `value.1`, ..., each null
    in the other's rows (one tuple run left a search's floats as text)."""
    values = [parse_json(text) for text in texts]
    scalars = [None if isinstance(v, list) else v for v in values]
    if any(v is not None for v in scalars):
        yield typed_series("value", scalars)
    tuples = [v if isinstance(v, list) else None for v in values]
    for i in range(max((len(v) for v in tuples if v is not None), default=0)):
        position = [v[i] if v is not None and i < len(v) else None for v in tuples]
        yield typed_series(f"value.{i}", position)


def artifact_dirs(uris: pl.Series) -> pl.Series:
    """Local directories of artifact URIs: `file://` URIs and plain paths;
    null where artifacts live elsewhere (`mlflow-artifacts:`, `s3://`, ...)."""
    local = (
        pl.select(
            pl.when(uris.str.starts_with("file://"))
            .then(uris.str.strip_prefix("file://"))
            .when(uris.str.contains(r"^[A-Za-z][A-Za-z0-9+.-]+:"))
            .then(None)
            .otherwise(uris)
        )
        .to_series()
        .cast(pl.String)
    )
    if local.str.contains("%", literal=True).any():
        local = pl.Series([None if u is None else unquote(u) for u in local], dtype=pl.String)
    return local


def config_columns(configs: pl.Series) -> tuple[pl.DataFrame, frozenset[str]]:
    """One column per dotted config key, typed by the rule of `layout`:
    decoded in bulk by polars, but for the keys whose values clash (their
    JSON text, made in Python; their names are given too) and the configs
    polars refuses (NaN, infinities: read by Python, typed alike); all in
    Python when polars refuses more (damaged JSON), with the same result."""
    if configs.is_empty() or not configs.null_count() < len(configs):
        return pl.DataFrame(), frozenset()
    refused = configs.str.contains(REFUSED).fill_null(False).arg_true().to_list()
    refused_documents = [parse_object(configs[row]) for row in refused]
    clean = configs.clone().scatter(refused, None) if refused else configs  # scatter: in place
    representatives = [parse_json(t) for t in clean.gather(json_representatives(clean.to_list()))]
    layout = Layout.of([*representatives, *refused_documents])
    by_python = layout.by_python()
    columns: dict[str, pl.Series] = {}
    try:
        if any(nesting(doc) > MAX_SHAPED_NESTING for doc in representatives):
            raise pl.exceptions.ComputeError("nested beyond the shapes of json_representatives")
        decoded = decode_json(clean, layout.bulk_dtype(by_python))
        columns.update(with_rows(flatten_struct(decoded, ()), refused, refused_documents))
    except pl.exceptions.PolarsError:
        by_python, columns = [()], {}
    json_columns: set[str] = set()
    if by_python:
        documents = [parse_object(text) for text in configs]
        for path in by_python:
            values = [value_at(document, path) for document in documents]
            for name, series, as_json in python_columns(".".join(path), values):
                columns[name] = series
                if as_json:
                    json_columns.add(name)
    return pl.DataFrame(dict(sorted(columns.items()))), frozenset(json_columns)


# What Python writes in JSON and polars refuses to read: NaN and infinities.
REFUSED = r"\bNaN\b|Infinity"


def with_rows(
    columns: Iterable[tuple[tuple[str, ...], pl.Series]],
    rows: list[int],
    documents: list[dict[str, Any]],
) -> Iterator[tuple[str, pl.Series]]:
    """The decoded columns (by key path) by dotted name, with the values of
    `documents` (read by Python) put at their `rows`."""
    for path, series in columns:
        if rows:
            values = [value_at(document, path) for document in documents]
            patch = pl.Series(series.name, values, series.dtype, strict=False)
            index = pl.int_range(0, len(series), eager=True).scatter(
                rows, range(len(series), len(series) + len(rows))
            )
            series = pl.concat([series, patch])[index]
        yield ".".join(path), series


def decode_json(texts: pl.Series, dtype: PolarsDataType) -> pl.Series:
    """Polars' decoding of JSON documents to `dtype`, in parallel chunks."""
    size = -(-len(texts) // pl.thread_pool_size())
    chunks = [
        pl.LazyFrame({"json": texts.slice(start, size)}).select(
            pl.col("json").str.json_decode(dtype)
        )
        for start in range(0, len(texts), size)
    ]
    return pl.concat(frame.to_series() for frame in pl.collect_all(chunks))


# The Rust core's documents nested deeper than this share one shape (its MAX_DEPTH).
MAX_SHAPED_NESTING = 64


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


def parse_json(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def flatten_struct(
    series: pl.Series, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], pl.Series]]:
    """The struct's leaf columns, each with its path of field names."""
    if not isinstance(series.dtype, pl.Struct):
        yield path, series
        return
    for field in series.dtype.fields:
        yield from flatten_struct(series.struct.field(field.name), (*path, field.name))


def value_at(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a path of keys in a document (None where there is none)."""
    node: Any = document
    for name in path:
        node = node.get(name) if isinstance(node, dict) else None
    return node


def parse_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def fallback_configs(tables: Tables, untagged: pl.DataFrame) -> dict[str, str]:
    """JSON configs for the runs without the config tag: from their params,
    else (no params, or a value MLflow may have cut) from `.hydra/config.yaml`."""
    params: dict[str, dict[str, str]] = defaultdict(dict)
    for run_id, key, value in tables.params.iter_rows():
        params[run_id][key] = value
    configs = {}
    for run_id, artifact_dir in untagged.select("run_id", "artifact_dir").iter_rows():
        config = config_from_params(params.get(run_id, {}))
        if config is None:
            config = config_from_file(artifact_dir)
        if config is not None:
            configs[run_id] = json.dumps(config, sort_keys=True, default=str)
    return configs


def config_from_params(params: Mapping[str, str]) -> dict[str, Any] | None:
    """The nested config from dotted params, each value parsed back to its
    type; None when there are none or one may be cut at MLflow's limit."""
    if not params or any(len(v) >= MAX_PARAM_LENGTH for v in params.values()):
        return None
    config: dict[str, Any] = {}
    for key, text in params.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            child = node.setdefault(parent, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = parse_value(text)
    return config


INTEGER = re.compile(r"[-+]?\d+")
FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")


def parse_value(text: str) -> Any:
    """A param's text (`str(value)` of the resolved config) back to its value."""
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if INTEGER.fullmatch(text):
        return int(text)
    if FLOAT.fullmatch(text):
        return float(text)
    if text[:1] in "[{" and text:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text
    return text


def config_from_file(artifact_dir: str | None) -> dict[str, Any] | None:
    """The run's `.hydra/config.yaml`, resolved where OmegaConf can."""
    if artifact_dir is None:
        return None
    path = Path(artifact_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    conf = OmegaConf.load(path)
    try:
        container = OmegaConf.to_container(conf, resolve=True)
    except Exception:  # an interpolation only Hydra's runtime could resolve
        container = OmegaConf.to_container(conf, resolve=False)
    if not isinstance(container, dict):
        return None
    return {str(key): value for key, value in container.items()}
