"""Results a person reads: what a sweep varies, in the terminal (`hydraflow
runs`, by snapshot), in Python (reprs, `varying`, `constants`) and in MLflow's
UI (`hydraflow ui`, loaded in headless Chromium).

The store: a small app with two config groups and nested data settings
(tests/apps/results), swept over `model` and `optimizer.lr` (4 runs of
`train`), and run once without overrides (experiment `plain`). Run ids are
random, so snapshots show them as `<id0001>`, ... in order of appearance.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import mlflow
import polars as pl
import pytest
from hydraflow.errors import NoRunsWarning

from tests.conftest import HYDRAFLOW, user_environment
from tests.services import free_port

APP = Path(__file__).parent / "apps" / "results"
SWEEP = ["model=mlp,cnn", "optimizer.lr=0.01,0.1"]


def environment(**extra: str) -> dict[str, str]:
    return {**user_environment(), "TZ": "UTC", "COLUMNS": "80", **extra}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    shutil.copytree(APP, folder, dirs_exist_ok=True)
    for args in (["-m", "hydra.job.name=train", *SWEEP], ["hydra.job.name=plain"]):
        result = subprocess.run(
            [sys.executable, "train.py", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            env=environment(),
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def hydraflow_cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYDRAFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=environment(**env),
        timeout=120,
    )


def anonymous(text: str) -> str:
    """Run ids (32 hex digits, or their first 8) as `<id000N>`, N by first appearance."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        short = match.group(0)[:8]
        names.setdefault(short, f"<id{len(names) + 1:04}>")
        return names[short]

    return re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}\b", name, text)


@pytest.fixture
def runs(store: Path) -> hydraflow.Runs[object]:
    return hydraflow.load("train", tracking_uri=store / "mlflow.db")


@pytest.mark.slow
def test_the_table_shows_what_varies_and_says_the_constants_once(store: Path) -> None:
    result = hydraflow_cli(store, "runs", "train")
    assert result.returncode == 0, result.stderr
    assert anonymous(result.stdout) == (
        "4 runs; in every one: experiment=train status=FINISHED data.augment.crop=4\n"
        "data.augment.flip=True data.batch_size=64 data.name=cifar10 optimizer.name=sgd\n"
        "seed=0 choice.optimizer=sgd\n"
        "run_id    optimizer.lr  choice.model  metrics.accuracy  metrics.loss\n"
        "────────────────────────────────────────────────────────────────────\n"
        "<id0001>          0.01  mlp                   0.984375      0.182292\n"
        "<id0002>           0.1  mlp                   0.894375      0.272292\n"
        "<id0003>          0.01  cnn                   0.992188      0.174479\n"
        "<id0004>           0.1  cnn                   0.902188      0.264479\n"
    )


@pytest.mark.slow
def test_columns_sort_and_limit(store: Path) -> None:
    args = ["runs", "train", "--columns", "choice.*,optimizer__lr,metrics.loss"]
    result = hydraflow_cli(store, *args, "--sort", "-metrics.loss", "--limit", "2")
    assert result.stdout == (
        "choice.model  choice.optimizer  optimizer.lr  metrics.loss\n"
        "──────────────────────────────────────────────────────────\n"
        "mlp           sgd                        0.1      0.272292\n"
        "cnn           sgd                        0.1      0.264479\n"
    )
    ascending = hydraflow_cli(store, *args, "--sort", "choice.model,metrics.loss", "--desc")
    assert [line.split()[0] for line in ascending.stdout.splitlines()[2:]] == ["mlp"] * 2 + [
        "cnn"
    ] * 2
    csv = hydraflow_cli(store, *args, "--format", "csv", "--sort", "metrics.loss")
    assert csv.stdout.splitlines()[0] == "choice.model,choice.optimizer,optimizer.lr,metrics.loss"
    assert csv.stdout.splitlines()[1] == "cnn,sgd,0.01,0.174479"
    every = hydraflow_cli(store, "runs", "train", "--format", "csv")
    assert len(every.stdout.splitlines()[0].split(",")) == len(
        hydraflow.load("train", tracking_uri=store / "mlflow.db").frame.columns
    )


@pytest.mark.slow
def test_the_table_fits_the_terminal(store: Path) -> None:
    narrow = hydraflow_cli(store, "runs", "train", "--all-columns", COLUMNS="60")
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert lines[0].split()[:3] == ["run_id", "experiment", "status"]
    wide = hydraflow_cli(store, "runs", "train", "--all-columns", COLUMNS="400")
    assert wide.stdout.splitlines()[0].split()[-2:] == ["metrics.accuracy", "metrics.loss"]


@pytest.mark.slow
def test_a_piped_table_is_printed_whole(store: Path) -> None:
    """Piped (not a terminal) and without COLUMNS, the table was cut to 80
    columns, values with an ellipsis and columns left out."""
    env = {k: v for k, v in environment().items() if k != "COLUMNS"}
    piped = subprocess.run(
        [HYDRAFLOW, "runs", "train", "--all-columns"],
        cwd=store,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = piped.stdout.splitlines()
    frame = hydraflow.load("train", tracking_uri=store / "mlflow.db").frame
    assert lines[0].split() == frame.columns
    assert max(len(line) for line in lines) > 80
    assert lines[0].split()[-2:] == ["metrics.accuracy", "metrics.loss"]
    assert "more columns" not in piped.stdout
    assert "…" not in piped.stdout


@pytest.mark.slow
def test_a_range_filter_is_an_interval_and_an_empty_filter_says_so(store: Path) -> None:
    def count(*filters: str) -> int:
        result = hydraflow_cli(store, "runs", "train", *filters, "--format", "csv")
        assert result.returncode == 0, result.stderr
        return max(len(result.stdout.splitlines()) - 1, 0)

    assert count("optimizer.lr=0.001:0.1") == 4  # the sweep grammar would list 0.001 only
    assert count("optimizer.lr=0.005:0.05") == 2
    assert count("optimizer.lr=0.05:") == 2
    assert count("optimizer.lr=:0.01", "choice.model=cnn") == 1
    assert count("optimizer.lr=0.01,0.1") == 4  # a list stays a list
    assert count("optimizer.lr/m=10:100") == 4  # a scale applies to both ends
    nothing = hydraflow_cli(store, "runs", "train", "choice.model=vit")
    assert nothing.returncode == 1 and nothing.stdout == ""  # as grep: nothing matched
    assert nothing.stderr == "hydraflow: no run has choice.model=vit (choice.model is cnn, mlp)\n"
    python = hydraflow.load("train", tracking_uri=store / "mlflow.db")
    assert len(python.filter(optimizer__lr=(0.001, 0.1))) == 4


@pytest.mark.slow
def test_a_pattern_matching_nothing_warns_in_python_and_on_the_command_line(store: Path) -> None:
    expected = "no runs of an experiment matching 'trian'; the experiments are: plain, train"
    with pytest.warns(NoRunsWarning) as caught:
        assert len(hydraflow.load("trian", tracking_uri=store / "mlflow.db")) == 0
    assert [str(w.message) for w in caught] == [expected]
    result = hydraflow_cli(store, "runs", "trian")
    assert result.stderr == f"hydraflow: {expected}\n"
    assert result.returncode == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hydraflow.load("tr*", tracking_uri=store / "mlflow.db")
        # An experiment with no run of the statuses asked for is no typo.
        assert len(hydraflow.load("train", tracking_uri=store / "mlflow.db", status="FAILED")) == 0


@pytest.mark.slow
def test_runs_say_what_varies_and_what_is_constant(runs: hydraflow.Runs[object]) -> None:
    assert runs.varying() == ["optimizer.lr", "choice.model"]
    assert runs.varying(implied=True) == [
        "model.name",
        "model.width",
        "optimizer.lr",
        "choice.model",
    ]
    assert runs.constants() == {
        "experiment": "train",
        "status": "FINISHED",
        "data.augment.crop": 4,
        "data.augment.flip": True,
        "data.batch_size": 64,
        "data.name": "cifar10",
        "optimizer.name": "sgd",
        "seed": 0,
        "choice.optimizer": "sgd",
    }
    frame = runs.varying_frame()
    assert frame.columns == [
        "run_id",
        "optimizer.lr",
        "choice.model",
        "metrics.accuracy",
        "metrics.loss",
    ]
    assert runs.filter(choice__model="cnn").varying() == ["optimizer.lr"]


@pytest.mark.slow
def test_reprs_lead_with_what_varies(runs: hydraflow.Runs[object]) -> None:
    one = runs.get(choice__model="cnn", optimizer__lr=0.1)
    assert anonymous(repr(one)) == (
        "Run(train <id0001> FINISHED optimizer.lr=0.1 choice.model='cnn' data.augment.crop=4 "
        "data.augment...)"
    )
    assert len(repr(one)) <= 100
    html = anonymous(runs._repr_html_())
    assert html.startswith(
        "<p>Runs(4 runs of train)<br>the same in every run: experiment=&#x27;train&#x27;"
    )
    headers = re.findall(r"<th>([^<]*)</th>", html)
    assert headers[:5] == [
        "run_id",
        "optimizer.lr",
        "choice.model",
        "metrics.accuracy",
        "metrics.loss",
    ]


@pytest.mark.slow
def test_history_carries_the_settings_to_plot_by(runs: hydraflow.Runs[object]) -> None:
    history = runs.history("loss", columns=True)
    assert history.columns == [
        *["run_id", "metric", "step", "timestamp", "value"],
        *["optimizer.lr", "choice.model"],
    ]
    curves = history.group_by("choice.model", "optimizer.lr").agg(pl.col("value").min())
    assert curves.height == 4
    named = runs.history("loss", columns=["model__width"])
    assert named.columns[-1] == "model.width" and named.height == 12


@pytest.mark.slow
def test_run_names_lead_with_the_swept_values(store: Path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    names = {
        experiment: sorted(
            r.info.run_name
            for r in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        )
        for experiment in ("train", "plain")
    }
    assert names == {
        "train": ["model=cnn lr=0.01", "model=cnn lr=0.1", "model=mlp lr=0.01", "model=mlp lr=0.1"],
        "plain": ["model=mlp optimizer=sgd"],  # no overrides: named from its config
    }


@contextlib.contextmanager
def started_ui(
    store: Path, *args: str, stop: signal.Signals = signal.SIGINT, **env: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`hydraflow ui` in its own process group, stopped with it (by `stop`,
    Ctrl-C unless told); yields the URL it prints."""
    process = subprocess.Popen(
        [HYDRAFLOW, "ui", *args],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(**env),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()  # printed once MLflow answers
        assert url, process.stderr.read() if process.stderr else ""
        yield process, url
    finally:
        # Ctrl-C, as a user stops it: one line, exit 130, its server stopped.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = None
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        assert status == 128 + stop, f"hydraflow ui ended {status} on {stop.name}"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_ui_leaves_no_log_behind(store: Path, tmp_path: Path, stop: signal.Signals) -> None:
    """The server's log lives as long as the UI (kept only when the server
    fails, and then named in the error)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with started_ui(store, "train", "--port", str(free_port()), stop=stop, TMPDIR=str(temporary)):
        assert [p.name for p in temporary.glob("hydraflow-ui-*.log")]
    assert not list(temporary.iterdir())


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium unavailable: run .ci/services.sh as root (apt-get install chromium)"
        if "CI" in os.environ:
            pytest.fail(message)
        pytest.skip(message)
    return found


def rendered(url: str, folder: Path, width: int = 1400) -> str:
    """The DOM of `url` after its scripts ran, in headless Chromium (a fresh
    profile: nothing remembered from another visit decides the page). The
    runs table renders only the columns in view: `width` says how many."""
    command = [
        *[chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},900"],
        *["--virtual-time-budget=30000", f"--user-data-dir={folder / 'profile'}"],
    ]
    dumped = subprocess.run(
        [*command, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=True
    )
    return dumped.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_ui_opens_on_the_runs_table_with_the_swept_columns(store: Path) -> None:
    port = free_port()
    with started_ui(store, "train", "--port", str(port)) as (process, url):
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        assert "workflowType=machine_learning" in url
        dom = rendered(url, store)
        assert process.poll() is None
    for name in ("model=cnn lr=0.01", "model=cnn lr=0.1", "model=mlp lr=0.01", "model=mlp lr=0.1"):
        assert f">{name}<" in dom, name
    for column in ("params.`optimizer.lr`", "tags.`hydraflow.choice.model`", "metrics.`loss`"):
        assert f'col-id="{column}"' in dom, column
    assert 'col-id="params.`data.name`"' not in dom  # a constant stays behind "Columns"
    assert process.returncode is not None
    time.sleep(0.5)
    with socket.socket() as probe:
        # Refused while anything listens there; the connections the browser
        # left in TIME_WAIT are no listener (without this, a flaky refusal).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # the server's process group is gone


@pytest.mark.slow
def test_the_ui_refuses_bad_input(store: Path, tmp_path: Path) -> None:
    cases = {
        (
            "ui",
            "trian",
        ): "no experiment matches 'trian'; the experiments are: plain, train",
        ("ui", "--tracking-uri", str(tmp_path / "none.db")): "no MLflow store at",
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        cases["ui", "train", "--port", port] = f"port {port} on 127.0.0.1 is in use"
        for args, message in cases.items():
            result = hydraflow_cli(store, *args)
            assert result.returncode == 2, args
            assert message in result.stderr and "Traceback" not in result.stderr


def test_run_names_keep_a_key_whole_where_its_last_part_is_ambiguous() -> None:
    from hydraflow.tracking.lifecycle import JobContext, run_name

    def named(overrides: list[str], choices: dict[str, str] | None = None) -> str:
        context = JobContext("train", Path("."), overrides=overrides, choices=choices or {})
        return run_name(context)

    assert named(["encoder.lr=0.1", "decoder.lr=0.2", "+seed=3"]) == (
        "encoder.lr=0.1 decoder.lr=0.2 seed=3"
    )
    assert named(["~data.augment"], {"optimizer": "sgd", "model": "mlp"}) == (
        "model=mlp optimizer=sgd"
    )
    assert named([]) == "defaults"


def test_a_long_table_stops_at_a_thousand_rows_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from hydraflow.analysis.listing import MAX_TABLE_ROWS, View, table

    frame = pl.DataFrame(
        {"run_id": [f"{i:032x}" for i in range(1001)], "status": ["FINISHED"] * 1001}
    ).with_columns(pl.Series("metrics.loss", [i / 1000 for i in range(1001)]))
    out = io.StringIO()
    table(frame, View(), out)
    rows = out.getvalue().splitlines()[3:]  # the constants, the header, its rule
    assert len(rows) == MAX_TABLE_ROWS == 1000
    assert "the first 1000 of 1001 runs" in capsys.readouterr().err
    table(frame, View(limit=1001), out := io.StringIO())
    assert len(out.getvalue().splitlines()) == 3 + 1001


def test_a_long_constant_is_cut_in_the_line_above_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    monkeypatch.delenv("COLUMNS", raising=False)  # not fitted: the line is not wrapped

    from hydraflow.analysis.listing import View, table

    blob = "ab" * 3500
    frame = pl.DataFrame(
        {"run_id": ["a" * 32, "b" * 32], "blob": [blob, blob], "x": [1, 2], "name": ["r", "r"]}
    )
    table(frame, View(), out := io.StringIO())
    shared = out.getvalue().splitlines()[0]
    assert shared == f"2 runs; in every one: blob={blob[:59]}…(7000 characters) name=r"


@pytest.mark.slow
def test_one_run_is_counted_in_the_singular(store: Path) -> None:
    result = hydraflow_cli(store, "runs", "plain")
    assert result.stdout.startswith("1 run; in every one: experiment=plain"), result.stdout
    plain = hydraflow.load("plain", tracking_uri=store / "mlflow.db")
    assert repr(plain).startswith("Runs(1 run of plain")


@pytest.mark.slow
def test_a_config_group_filters_on_its_option(store: Path, runs: hydraflow.Runs[object]) -> None:
    assert len(runs.filter(model="cnn")) == 2
    assert runs.filter(model="cnn").constants()["choice.model"] == "cnn"
    result = hydraflow_cli(store, "runs", "train", "model=cnn", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_the_columns_left_out_are_counted_in_the_singular_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from hydraflow.tables import print_table

    monkeypatch.setenv("COLUMNS", "26")
    out = io.StringIO()
    print_table(out, ["run_id", "a_long_name", "b"], [["x" * 12, "1", "2"]])
    assert out.getvalue().splitlines()[-1] == "... 1 more column: b"
    out = io.StringIO()
    print_table(out, ["run_id", "a_long_name", "b", "c"], [["x" * 12, "1", "2", "3"]])
    assert out.getvalue().splitlines()[-1] == "... 2 more columns: b, c"


OBJECTIVE = Path(__file__).parent / "apps" / "objective"
LONG_X = 0.0017826497151386949


@pytest.fixture(scope="module")
def objective(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Job `j` over x=2,9,10 returning `x` (9 and 10 stopped early), then
    once with `multi=true x=0.0017826497151386949` returning the tuple
    `(x, 1.0)`, named `x=0.0017826497151386949 multi=True` (34 characters)."""
    folder = tmp_path_factory.mktemp("objective")
    shutil.copytree(OBJECTIVE, folder, dirs_exist_ok=True)
    for args in (["run", "j"], ["run", "j", "multi=true", f"x={LONG_X}"]):
        result = hydraflow_cli(folder, *args)
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def recorded_values(store: Path) -> dict[str, object]:
    """MLflow's own reading of each run's `hydraflow.value` tag, decoded."""
    import json

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("j")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return {r.info.run_id: json.loads(r.data.tags["hydraflow.value"]) for r in runs}


@pytest.mark.slow
def test_a_tuple_return_leaves_the_other_runs_values_numbers(
    objective: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tuple-returning run made the whole `value` column text: `--sort
    value` printed 10, 2, 9 and the best trial was wrong."""
    import json

    expected = recorded_values(objective)
    assert sorted(map(str, expected.values())) == ["10.0", "2.0", "9.0", f"[{LONG_X}, 1.0]"]
    runs = hydraflow.load("j", tracking_uri=objective / "mlflow.db")
    frame = runs.frame
    assert frame.schema["value"] == pl.Float64 and frame.schema["value.0"] == pl.Float64
    assert runs.json_columns == frozenset()
    for row in frame.iter_rows(named=True):
        value = expected[row["run_id"]]
        if isinstance(value, list):
            assert (row["value"], row["value.0"], row["value.1"]) == (None, *value)
        else:
            assert (row["value"], row["value.0"], row["value.1"]) == (value, None, None)
    scalar = runs.filter(multi=False)
    assert scalar.sort("value").frame["x"].to_list() == [2.0, 9.0, 10.0]
    assert runs.filter(value=(5, 20)).frame["x"].to_list() == [9.0, 10.0]
    # The published API, from a folder without a store (its store was looked
    # for beside the project folder, so the current folder's was read).
    monkeypatch.chdir(tmp_path)
    dirs = sorted(hydraflow.iter_run_dirs(objective / "mlruns"))
    collection = hydraflow.Run.load(dirs).filter(multi=False).sort("value", reverse=True)
    assert collection.to_list("value") == [10.0, 9.0, 2.0]

    listed = hydraflow_cli(objective, "runs", "j", "multi=false", "--sort", "value")
    assert listed.returncode == 0, listed.stderr
    header, _, *rows = listed.stdout.splitlines()[1:]
    assert header.split() == ["run_id", "x", "stopped", "value", "metrics.loss"]
    assert [row.split()[1] for row in rows] == ["2", "9", "10"]
    best = hydraflow_cli(objective, "runs", "j", "--sort", "-value", "--limit", "1")
    assert best.stdout.splitlines()[-1].split()[2] == "10", best.stdout
    csv = hydraflow_cli(objective, "runs", "j", "--format", "csv", "--columns", "value*")
    assert csv.stdout.splitlines() == [
        *["value,value.0,value.1", "2.0,,", "9.0,,", "10.0,,", f",{LONG_X},1.0"]
    ]
    ranged = hydraflow_cli(objective, "runs", "j", "value=5:20", "--format", "json")
    assert [r["value"] for r in json.loads(ranged.stdout)] == [9.0, 10.0]
    tupled = hydraflow_cli(objective, "runs", "j", "value.0=0:1", "--format", "json")
    assert [(r["value"], r["value.0"], r["value.1"]) for r in json.loads(tupled.stdout)] == [
        (None, LONG_X, 1.0)
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_ui_shows_the_return_value_and_the_stopped_runs(objective: Path) -> None:
    """In a search the objective is often no metric: without the tags the
    UI could not show which trial was best, nor which were stopped. The
    name column fits `x=0.0017826497151386949 multi=True` (190 px cut it)."""
    with started_ui(objective, "j", "--port", str(free_port())) as (process, url):
        dom = rendered(url, objective, width=1920)
        assert process.poll() is None
    for column in ("tags.`hydraflow.value`", "tags.`hydraflow.stopped`", "params.`x`"):
        assert f'col-id="{column}"' in dom, column
    assert cells(dom, "tags.`hydraflow.value`") == ["10.0", "2.0", "9.0", f"[{LONG_X},1.0]"]
    assert cells(dom, "tags.`hydraflow.stopped`") == ["-", "-", "0", "0"]  # the step it stopped at
    assert f">x={LONG_X} multi=True<" in dom
    widths = re.findall(r'col-id="attributes.`Run Name`"[^>]*width: (\d+)px', dom)
    assert widths and {int(w) for w in widths} == {8 * 34 + 48}


def cells(dom: str, column: str) -> list[str]:
    """The texts of a column's cells in MLflow's runs table (ag-grid), sorted."""
    pattern = rf'id="cell-{re.escape(column)}-\d+" class="ag-cell-value">([^<]*)<'
    return sorted(re.findall(pattern, dom))
