"""From the tables a store gives to one typed frame, one row per run.

Configs come from the `hydraflow.config` tag: compact JSON that polars
decodes in bulk, so every key keeps its type (int, float, bool, str, list)
without reading one file per run. Runs without the tag (older runs, other
tools) get the same JSON rebuilt from their params, whose text is parsed back
to types, or from their `.hydra/config.yaml`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl

from hydraflow._core import json_representatives
from hydraflow.analysis.reading import RUN_SCHEMA, Tables
from hydraflow.mlflow_schema import MAX_PARAM_LENGTH, flatten

TIME = pl.Datetime("ms", "UTC")
BASE_SCHEMA: dict[str, Any] = {
    "run_id": pl.String,
    "experiment": pl.String,
    "status": pl.String,
    "start_time": TIME,
    "end_time": TIME,
    "artifact_dir": pl.String,
}


def build(tables: Tables) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The frame (sorted by start time) and each run's config as JSON."""
    runs = tables.runs
    base = base_columns(runs)
    configs = runs.select("run_id", with_fallbacks(tables, base, runs["config"]))
    # Choices and metrics that only runs outside the selection have are left out.
    extra = runs.select(c for c in runs.columns if c not in RUN_SCHEMA)
    extra = extra.select(c.name for c in extra.iter_columns() if c.null_count() < len(c))
    result = pl.concat([base, config_columns(configs["config"]), extra], how="horizontal")
    order = result.with_row_index("row").sort("start_time", "run_id", nulls_last=True)["row"]
    return result[order], configs[order]


def with_fallbacks(tables: Tables, base: pl.DataFrame, configs: pl.Series) -> pl.Series:
    """The config tags, with JSON rebuilt for the runs without one."""
    if not configs.null_count():
        return configs
    rebuilt = fallback_configs(tables, base.filter(configs.is_null()))
    texts = [
        rebuilt.get(i) if t is None else t for i, t in zip(base["run_id"], configs, strict=True)
    ]
    return pl.Series("config", texts, dtype=pl.String)


def base_columns(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.select(
        "run_id",
        "experiment",
        "status",
        pl.col("start_time").cast(TIME),
        pl.col("end_time").cast(TIME),
        artifact_dirs(runs["artifact_uri"]).alias("artifact_dir"),
    )


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


def config_columns(configs: pl.Series) -> pl.DataFrame:
    """One typed column per dotted config key, decoded in bulk by polars;
    configs whose types clash across runs go through Python instead."""
    if configs.is_empty() or not configs.null_count() < len(configs):
        return pl.DataFrame()
    try:
        decoded = decode_json(configs)
    except pl.exceptions.PolarsError:
        return clashing_config_columns(configs)
    return pl.DataFrame(dict(sorted(flatten_struct(decoded, ""), key=lambda item: item[0])))


def decode_json(texts: pl.Series) -> pl.Series:
    """Polars' decoding of JSON documents with the type inferred from them
    all, faster: the type comes from one document of each shape (the Rust
    core groups them), then the documents are decoded in parallel chunks."""
    representatives = texts.gather(json_representatives(texts.to_list()))
    dtype = representatives.str.json_decode(infer_schema_length=None).dtype
    size = -(-len(texts) // pl.thread_pool_size())
    chunks = [
        pl.LazyFrame({"json": texts.slice(start, size)}).select(
            pl.col("json").str.json_decode(dtype)
        )
        for start in range(0, len(texts), size)
    ]
    return pl.concat(frame.to_series() for frame in pl.collect_all(chunks))


def flatten_struct(series: pl.Series, prefix: str) -> Iterator[tuple[str, pl.Series]]:
    if not isinstance(series.dtype, pl.Struct):
        yield prefix.rstrip("."), series
        return
    for field in series.dtype.fields:
        yield from flatten_struct(series.struct.field(field.name), f"{prefix}{field.name}.")


def clashing_config_columns(configs: pl.Series) -> pl.DataFrame:
    """A key whose values have types polars cannot unify keeps its values as
    JSON text; all other keys keep their types. A config tag that is not a
    JSON object (written by another tool, or damaged) gives no values."""
    columns: dict[str, list[Any]] = defaultdict(lambda: [None] * len(configs))
    for row, text in enumerate(configs):
        for key, value in flatten(parse_object(text)):
            columns[key][row] = value
    frame: dict[str, pl.Series] = {}
    for key, values in sorted(columns.items()):
        try:
            frame[key] = pl.Series(key, values, strict=True)
        except (TypeError, pl.exceptions.PolarsError):
            frame[key] = pl.Series(key, [None if v is None else json.dumps(v) for v in values])
    return pl.DataFrame(frame)


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
