"""A config key whose values have different JSON types across runs (a bool
and an int, a list and a text, an int and a text) keeps every value exactly,
as its JSON text, whatever else the store holds; `filter` and `hydraflow runs
KEY=VALUE` match it by value. The oracles: Python's JSON reading of the
configs, MLflow's params and config tag, and the published HydraFlow's values
for its API (tests/published_types.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydraflow
import mlflow
import polars as pl
import pytest
from hydraflow.analysis.frame import config_columns
from hydraflow.analysis.layout import json_text
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import default_store_in, run_cli, user_environment
from tests.published_types import PUBLISHED, STATEMENTS, evaluate, namespace

APP = """
import hydraflow
from omegaconf import DictConfig
@hydraflow.main(version_base=None, config_path=None, config_name=None)
def app(cfg: DictConfig) -> None: pass
if __name__ == "__main__": app()
"""
# Each experiment's sweep (`hydra.job.name` names the experiment).
SWEEPS = {
    "C": ["+warmup=false,500,true"],
    "D": ["+layers=[64,64],auto"],
    "V": ["+v=1,2.5,abc,true,[1,2]"],
    "P": ["+x=1,a"],
    "R": ["+x=1,a", "+f=nan"],
    "A": ["+x=1,2"],
    "B": ["+x=a"],
    # Quoted values: a comma, a blank and a range's colon that are text.
    "Q": ["+name='a,b',\"c d\",plain", "+t='12:30','007'"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("types")
    (folder / "app.py").write_text(APP)
    for name, sweep in SWEEPS.items():
        args = [sys.executable, "app.py", "-m", *sweep, f"hydra.job.name={name}"]
        done = subprocess.run(
            args, cwd=folder, capture_output=True, text=True, env=user_environment(), timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture
def inside(store: Path) -> Iterator[Path]:
    with default_store_in(store) as folder:
        yield folder


def kept(runs: hydraflow.Runs[Any], **criteria: Any) -> int:
    """How many runs `filter` keeps (none is no mistake here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hydraflow.errors.NoRunsWarning)
        return len(runs.filter(**criteria))


def mlflow_values(store: Path, experiment: str, key: str) -> list[tuple[str, Any]]:
    """Per run, in start order: MLflow's param and the config tag's value of `key`."""
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    return [
        (run.data.params[key], json.loads(run.data.tags["hydraflow.config"])[key]) for run in runs
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("experiment", "key"), [("C", "warmup"), ("D", "layers"), ("V", "v"), ("P", "x"), ("R", "x")]
)
def test_a_clashing_key_holds_each_value_exactly_as_mlflow_reads_it(
    inside: Path, experiment: str, key: str
) -> None:
    runs = hydraflow.load(experiment)
    assert runs.json_columns == {key}
    texts = runs.frame[key].to_list()
    expected = mlflow_values(inside, experiment, key)
    assert [str(json.loads(t)) for t in texts] == [param for param, _ in expected]
    assert texts == [json_text(value) for _, value in expected]


@pytest.mark.slow
def test_bool_and_int_stay_apart(inside: Path) -> None:
    """Item 1: `false, 500, true` was Int64 [0, 500, 1]."""
    runs = hydraflow.load("C")
    assert runs.frame["warmup"].to_list() == ["false", "500", "true"]
    assert [kept(runs, warmup=w) for w in (True, False, 500, 1, 0)] == [1, 1, 1, 0, 0]
    assert kept(runs, warmup=[True, 500]) == 2
    assert [r.cfg.warmup for r in runs] == [False, 500, True]
    for argument, count in (("warmup=true", 1), ("warmup=TRUE,500", 2), ("warmup=false", 1)):
        done = run_cli("runs", "C", argument, "--format", "csv", cwd=inside)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 1 + count, argument
    missed = run_cli("runs", "C", "warmup=1", cwd=inside)
    assert missed.returncode == 1
    assert "warmup is 500, false, true" in missed.stderr


@pytest.mark.slow
def test_list_and_text_and_every_json_type_stay_apart(inside: Path) -> None:
    """Item 2: `[64,64], auto` was List(String); `1, 2.5, abc, true, [1,2]` too."""
    layers = hydraflow.load("D")
    assert layers.frame["layers"].to_list() == ["[64,64]", '"auto"']
    assert len(layers.filter(layers="auto")) == len(layers.filter(layers=[[64, 64]])) == 1
    v = hydraflow.load("V")
    assert v.frame["v"].to_list() == ["1", "2.5", '"abc"', "true", "[1,2]"]
    counts = [kept(v, v=w) for w in ("abc", 1, 1.0, True, 2.5, (1, 3), None)]
    assert counts == [1, 1, 1, 1, 1, 2, 0]
    assert len(v.filter(v=[1, 2])) == 2  # any of 1 and 2, or the list itself
    assert len(v.filter(v=lambda value: isinstance(value, list))) == 1
    for argument, count in (("layers=auto", 1), ("layers=[64,64]", 1), ("v=1:3", 2), ("v=abc", 1)):
        experiment = "D" if argument.startswith("layers") else "V"
        done = run_cli("runs", experiment, argument, "--format", "csv", cwd=inside)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 1 + count, argument
    # `--format json` writes each value as itself, not as a string of JSON.
    done = run_cli("runs", "V", "--format", "json", cwd=inside)
    assert done.returncode == 0, done.stderr
    assert [row["v"] for row in json.loads(done.stdout)] == [1, 2.5, "abc", True, [1, 2]]


@pytest.mark.slow
def test_a_nan_elsewhere_changes_nothing(inside: Path) -> None:
    """Item 3: a NaN under `f` made `x` ['1', '"a"'] in R but ['1', 'a'] in P."""
    plain, with_nan = hydraflow.load("P"), hydraflow.load("R")
    assert plain.frame["x"].to_list() == with_nan.frame["x"].to_list() == ["1", '"a"']
    assert math.isnan(with_nan.frame["f"][0])
    assert len(plain.filter(x="a")) == len(with_nan.filter(x="a")) == 1
    for experiment in ("P", "R"):
        done = run_cli("runs", experiment, "x=a", "--format", "csv", cwd=inside)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 2


@pytest.mark.slow
def test_types_come_from_the_runs_asked_for(inside: Path) -> None:
    """Item 4: A's `x` (1, 2) and B's (`a`) in one store."""
    from hydraflow import Run, RunCollection, iter_run_dirs

    assert hydraflow.load("A").frame.schema["x"] == pl.Int64
    collection = Run.load(iter_run_dirs("A"))
    assert collection.frame.schema["x"] == pl.Int64
    assert collection.to_list("x") == [1, 2]
    both = Run.load(iter_run_dirs(["A", "B"]))
    assert both.to_list("x") == [1, 2, "a"]
    assert both.sort("x", reverse=True).to_list("x") == ["a", 2, 1]
    assert len(both.filter(x="a")) == 1
    # Runs of two loads, typed apart, collected: the key clashes in the collection.
    mixed = RunCollection([*hydraflow.load("A"), *hydraflow.load("B")])
    assert mixed.frame["x"].to_list() == ["1", "2", '"a"']
    assert mixed.to_list("x") == [1, 2, "a"]
    # Runs opened one by one from their folders, then collected.
    alone = RunCollection([Run(d) for d in iter_run_dirs("C")])
    assert alone.json_columns == {"warmup"}
    assert alone.to_list("warmup") == [False, 500, True]


@pytest.mark.slow
def test_the_published_api_gives_the_published_values(inside: Path) -> None:
    from hydraflow import Run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hydraflow.errors.NoRunsWarning)
        got = evaluate(inside, namespace(Run))
    for statement, value, expected in zip(STATEMENTS, got, PUBLISHED, strict=True):
        assert value == expected, statement


@pytest.mark.slow
def test_an_empty_load_has_the_frame_s_types(inside: Path) -> None:
    """Item 5: `experiment` was Int64 when no run matched."""
    with pytest.warns(hydraflow.errors.NoRunsWarning):
        empty = hydraflow.load("nosuch").frame
    real = hydraflow.load("A").frame
    assert empty.schema == pl.Schema({k: real.schema[k] for k in empty.columns})
    assert pl.concat([empty, real.select(empty.columns)]).height == 2
    assert hydraflow.load("A", status="KILLED").frame.schema == empty.schema


@pytest.mark.slow
def test_a_list_of_values_filters_without_a_warning(inside: Path) -> None:
    """Item 6: polars' DeprecationWarning on `is_in` with a Series."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(hydraflow.load("A").filter(x=[1, 2])) == 2
        assert len(hydraflow.load("B").filter(x=["a"])) == 1
        done = run_cli("runs", "A", "x=1,2", "--format", "csv", cwd=inside)
    assert done.returncode == 0, done.stderr
    assert "DeprecationWarning" not in done.stderr


def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner, max_size=2)


# Values of every JSON type (no NaN: it is no value equal to itself).
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    nested,
    max_leaves=6,
)
config = st.dictionaries(st.sampled_from(["lr", "seed", "model", "layers"]), json_value)


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """A config's leaves under dotted keys (a mapping spreads into its keys)."""
    for name, item in value.items():
        key = f"{prefix}{name}"
        if isinstance(item, dict) and item:
            yield from leaves(item, f"{key}.")
        elif not isinstance(item, dict):
            yield key, item


def branches(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """A config's mappings under dotted keys."""
    for name, item in value.items():
        if isinstance(item, dict):
            yield f"{prefix}{name}", item
            yield from branches(item, f"{prefix}{name}.")


def kind(value: Any) -> Any:
    """A value as comparable across typings: numbers alike, a bool apart
    from a number, a mapping's missing keys as nulls."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list):
        return ("list", [kind(v) for v in value])
    if isinstance(value, dict):
        return ("map", {k: kind(v) for k, v in value.items() if v is not None})
    return value


@settings(max_examples=150, deadline=None)
@given(configs=st.lists(config, min_size=1, max_size=8))
def test_every_value_is_kept_as_python_reads_the_json(configs: list[dict[str, Any]]) -> None:
    texts = pl.Series([json.dumps(c) for c in configs], dtype=pl.String)
    frame, json_columns = config_columns(texts)
    expected: dict[str, list[Any]] = {}
    for row, document in enumerate(configs):
        for key, value in leaves(document):
            expected.setdefault(key, [None] * len(configs))[row] = value
    mappings = {k for c in configs for k, v in branches(c)}
    for key, values in expected.items():
        # A mapping in some config, null in others: only its keys are columns.
        if any(v is not None for v in values) or key not in mappings:
            assert key in frame.columns, key
    for key in frame.columns:
        got = frame[key].to_list()
        if key in json_columns:
            got = [None if t is None else json.loads(t) for t in got]
        assert [kind(v) for v in got] == [kind(v) for v in expected[key]], key
        scalars = {type(v) for v in expected[key] if not isinstance(v, list | dict | type(None))}
        if scalars <= {int, float} or len(scalars) == 1:
            assert key not in json_columns or any(isinstance(v, list) for v in expected[key])
        elif scalars:
            assert key in json_columns  # bool and number, text and number, ...


@settings(max_examples=100, deadline=None)
@given(configs=st.lists(config, min_size=1, max_size=8), every=st.integers(1, 3))
def test_a_nan_under_another_key_changes_no_column(
    configs: list[dict[str, Any]], every: int
) -> None:
    """Polars refuses NaN in JSON; those configs are read by Python, alike."""
    texts = pl.Series([json.dumps(c) for c in configs], dtype=pl.String)
    nans = [{**c, "f": math.nan} if i % every == 0 else c for i, c in enumerate(configs)]
    with_nan = pl.Series([json.dumps(c) for c in nans], dtype=pl.String)
    frame, json_columns = config_columns(texts)
    other, other_json = config_columns(with_nan)
    assert other.drop("f").to_dict(as_series=False) == frame.to_dict(as_series=False)
    assert other.drop("f").schema == frame.schema
    assert other_json == json_columns


def test_return_values_follow_the_same_rule() -> None:
    """`hydraflow.value` tags: a bool and an int apart, NaN kept, tuples by position."""
    from hydraflow.analysis.frame import outcome_columns

    stopped = pl.Series([None, None, None], dtype=pl.String)
    mixed, as_json = outcome_columns(pl.Series(["true", "5", None]), stopped)
    assert mixed["value"].to_list() == ["true", "5", None]
    assert as_json == {"value"}
    numbers, as_json = outcome_columns(pl.Series(["1", "NaN", "2.5"]), stopped)
    assert numbers.schema["value"] == pl.Float64 and as_json == set()
    assert math.isnan(numbers["value"][1])
    pairs, as_json = outcome_columns(pl.Series(["[1, 0.5]", '["a", 0.25]', None]), stopped)
    assert pairs["value.0"].to_list() == ["1", '"a"', None]
    assert pairs["value.1"].to_list() == [0.5, 0.25, None]
    assert as_json == {"value.0"}


def test_a_tuple_return_leaves_the_scalar_returns_numbers() -> None:
    """A tuple beside floats is another shape of result, not a clash: the
    floats stay a Float64 `value` (one tuple run made them all text, sorted
    as text), the tuple's items go to `value.0`, `value.1`."""
    from hydraflow.analysis.frame import outcome_columns

    texts = pl.Series(["2.0", "9.0", "[3.0,1.0]", "10.0", None, "[1,2,3]"])
    never = pl.Series([None] * 6, dtype=pl.String)
    frame, as_json = outcome_columns(texts, never)
    assert frame.schema == {
        "value": pl.Float64,
        "value.0": pl.Float64,
        "value.1": pl.Float64,
        "value.2": pl.Int64,
    }
    assert frame["value"].to_list() == [2.0, 9.0, None, 10.0, None, None]
    assert frame["value.0"].to_list() == [None, None, 3.0, None, None, 1.0]
    assert frame["value.2"].to_list() == [None] * 5 + [3]
    assert as_json == set()
    # Scalars of clashing JSON types are still kept as their JSON text.
    mixed, as_json = outcome_columns(pl.Series(["true", "[1,2]", "5"]), never[:3])
    assert mixed["value"].to_list() == ["true", None, "5"] and as_json == {"value"}
    assert mixed["value.1"].to_list() == [None, 2, None]


@pytest.mark.parametrize("order", [(1, 2**64 - 1), (2**64 - 1, 1), (1, -(2**63) - 1)])
def test_an_integer_beyond_64_bits_is_kept_in_either_order(order: tuple[int, int]) -> None:
    """Its documents shared a shape with the small integers': after a small
    one the column was Int64 and the big value read as null."""
    texts = pl.Series([json.dumps({"seed": seed, "n": 1}) for seed in order], dtype=pl.String)
    frame, json_columns = config_columns(texts)
    got = frame["seed"].to_list()
    if "seed" in json_columns:
        got = [json.loads(text) for text in got]
    assert got == list(order)
    assert frame["n"].to_list() == [1, 1]


@pytest.mark.parametrize(
    ("argument", "key", "wanted"),
    [
        ("name='a,b'", "name", {"a,b"}),
        ('name="c d",plain', "name", {"c d", "plain"}),
        ("t='12:30'", "t", {"12:30"}),
        ("t='007'", "t", {"007"}),
        # Hydra's choice(), as Hydra sweeps it.
        ("name=choice('a,b',plain)", "name", {"a,b", "plain"}),
        ("t=choice('12:30')", "t", {"12:30"}),
    ],
)
def test_a_quoted_filter_value_is_the_text_hydra_reads_from_it(
    store: Path, argument: str, key: str, wanted: set[str]
) -> None:
    listed = run_cli("runs", "Q", argument, "--format", "csv", "--columns", "run_id", cwd=store)
    assert listed.returncode == 0, listed.stderr
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("Q")
    assert experiment is not None
    expected = {
        run.info.run_id
        for run in client.search_runs([experiment.experiment_id])
        if run.data.params[key] in wanted
    }
    assert set(listed.stdout.split()[1:]) == expected and expected


@pytest.mark.timeout(30)
def test_lists_of_ints_and_floats_are_typed_at_once() -> None:
    """The second such list was checked against the int64 range value by
    value: a float there made Python walk the range (found by the property above)."""
    from hydraflow.analysis.layout import Clash, common_dtype

    assert common_dtype([[1, 2.5], [1, 2.5], [3, 0.5]]) == pl.List(pl.Float64)
    with pytest.raises(Clash):  # beyond int64, in a list of a kind seen before: JSON text
        common_dtype([[1, 2], [2**63, 1]])


def test_a_choice_filters_a_clashing_key_by_each_value(store: Path) -> None:
    listed = run_cli("runs", "C", "warmup=choice(true,500)", "--format", "json", cwd=store)
    assert listed.returncode == 0, listed.stderr
    assert sorted(map(str, (run["warmup"] for run in json.loads(listed.stdout)))) == ["500", "True"]
