"""`hydraflow ui`: MLflow's UI on a store, opened on the runs table of a job
with the columns its sweep varies.

MLflow 3's experiment page opens on its GenAI overview unless the URL asks
for `workflowType=machine_learning` (the `mlflow.experimentKind` tag no
longer decides it), and its runs table shows the columns a shared view says:
an experiment tag `mlflow.sharedViewState.<key>` holding the view as JSON,
applied by `?viewStateShareKey=<key>`. hydraflow writes that one tag.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlencode

import polars as pl

from hydraflow.analysis import variation
from hydraflow.analysis.reading import CHOICE_PREFIX, METRIC_PREFIX
from hydraflow.errors import HydraflowError
from hydraflow.mlflow_schema import (
    CHOICE_TAG_PREFIX,
    SHARED_VIEW_TAG_PREFIX,
    STOPPED_TAG,
    VALUE_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment

HOST = "127.0.0.1"
SHARE_KEY = "hydraflow"
SHARED_VIEW_TAG = f"{SHARED_VIEW_TAG_PREFIX}{SHARE_KEY}"
# MLflow's own experiment, never a job's.
DEFAULT_EXPERIMENT = "Default"
# A loaded machine starts MLflow's server slowly (imports, database migration check).
START_SECONDS = 240


class UiError(HydraflowError):
    """The UI cannot start: a busy port, a server that exits, an unknown job."""


class ServerFailed(UiError):
    """MLflow's server exited or never answered: its log is kept for the user."""

    def __init__(self, what: str, log: Path) -> None:
        super().__init__(f"{what} (its output is kept in {log})")
        self.log = log


def column_id(column: str) -> str:
    """The runs table's id of a frame column: `params.`lr``, `metrics.`loss``,
    `tags.`hydraflow.value`` (one tag, a tuple's too), ..."""
    if column.startswith(METRIC_PREFIX):
        return f"metrics.`{column.removeprefix(METRIC_PREFIX)}`"
    if column.startswith(CHOICE_PREFIX):
        return f"tags.`{CHOICE_TAG_PREFIX}{column.removeprefix(CHOICE_PREFIX)}`"
    if column == "stopped":
        return f"tags.`{STOPPED_TAG}`"
    if variation.RESULT.fullmatch(column):
        return f"tags.`{VALUE_TAG}`"
    return f"params.`{column}`"


# The runs table's name column: 190 px by default, so `lr=0.0017826497151386949
# model=cnn` showed no `model=`. Widened to its longest name (about 8 px a
# character and the status dot), to at most MAX_NAME_PX: the other columns stay in view.
NAME_COLUMN = "attributes.`Run Name`"
DEFAULT_NAME_PX = 190
MAX_NAME_PX = 480


def name_width(characters: int) -> int:
    return max(DEFAULT_NAME_PX, min(MAX_NAME_PX, 8 * characters + 48))


def view_state(frame: pl.DataFrame, longest_name: int = 0) -> dict[str, object]:
    """The runs table's view: the settings the runs vary, what they returned
    (the objective a search optimised is often no metric) and whether they
    were stopped early, then the metrics; the name column as wide as the
    longest run name (`longest_name` characters) needs, within a limit."""
    # The runs table has a run's name and status of its own, no run_id column.
    shown = [c for c in variation.table_columns(frame) if c not in ("run_id", "status")]
    state: dict[str, object] = {"selectedColumns": list(dict.fromkeys(map(column_id, shown)))}
    width = name_width(longest_name)
    if width > DEFAULT_NAME_PX:
        # MLflow applies a width only to a column of `columnOrder`; the name
        # column is first already, and the others keep their order.
        state |= {"columnOrder": [NAME_COLUMN], "columnWidths": {NAME_COLUMN: width}}
    return state


def longest_run_name(client: MlflowClient, uri: str, experiment_id: str) -> int:
    """How many characters the longest name of the experiment's runs has: one
    query on a SQLite store, else the names of its newest thousand runs."""
    from hydraflow.store import connect_read_only, sqlite_path

    path = sqlite_path(uri)
    if path is None:
        runs = client.search_runs([experiment_id], max_results=1000)
        return max((len(r.info.run_name or "") for r in runs), default=0)
    query = "SELECT MAX(LENGTH(name)) FROM runs WHERE experiment_id = ? AND lifecycle_stage = ?"
    with contextlib.closing(connect_read_only(path)) as connection:
        (longest,) = connection.execute(query, (experiment_id, "active")).fetchone()
    return int(longest or 0)


def experiment_url(base: str, experiment_id: str | None) -> str:
    """The runs table of the experiment (the experiments' list without one)."""
    query = {"workflowType": "machine_learning"}
    if experiment_id is None:
        return f"{base}/#/experiments?{urlencode(query)}"
    query["viewStateShareKey"] = SHARE_KEY
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def prepare(client: MlflowClient, uri: str, job: str | None) -> str | None:
    """The id of the experiment to open (None: the list of them), its view
    written as the shared view hydraflow's URL applies."""
    from hydraflow.analysis.runs import load

    experiments = client.search_experiments()
    chosen = [
        e
        for e in experiments
        if (fnmatch.fnmatchcase(e.name, job) if job else e.name != DEFAULT_EXPERIMENT)
    ]
    if job is not None and not chosen:
        names = ", ".join(sorted(e.name for e in experiments if ours(client, e))) or "(none)"
        raise UiError(f"no experiment matches {job!r}; the experiments are: {names}")
    if len(chosen) != 1:
        return None
    experiment = chosen[0]
    frame = load(experiment.name, tracking_uri=uri, status=None).frame.filter(
        pl.col("experiment") == experiment.name
    )
    longest = longest_run_name(client, uri, experiment.experiment_id)
    state = json.dumps(view_state(frame, longest), separators=(",", ":"))
    client.set_experiment_tag(experiment.experiment_id, SHARED_VIEW_TAG, state)
    experiment_id: str = experiment.experiment_id
    return experiment_id


def ours(client: MlflowClient, experiment: Experiment) -> bool:
    """False for MLflow's `Default` experiment when it is empty."""
    return experiment.name != DEFAULT_EXPERIMENT or bool(
        client.search_runs([experiment.experiment_id], max_results=1)
    )


def port_is_free(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def mlflow_server(uri: str, port: int, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`mlflow server` on 127.0.0.1 in its own process group, stopped with it."""
    if not port_is_free(port):
        raise UiError(f"port {port} on {HOST} is in use (another MLflow UI?); pass --port")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", HOST, "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def server_log() -> Iterator[IO[bytes]]:
    """A temporary file for the server's output, removed when the UI ends
    (normally or by a signal), kept only when the server failed: the error
    names it."""
    import tempfile

    keep = False
    with tempfile.NamedTemporaryFile(prefix="hydraflow-ui-", suffix=".log", delete=False) as log:
        try:
            yield log
        except ServerFailed:
            keep = True
            raise
        finally:
            if not keep:
                Path(log.name).unlink(missing_ok=True)


def wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise ServerFailed(f"MLflow's server exited: {' '.join(tail) or 'no output'}", log)
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=5):
            return
        time.sleep(0.3)
    raise ServerFailed(f"MLflow's server did not answer in {START_SECONDS} s", log)


def open_browser(url: str) -> None:
    """Opens `url` where a person sits at a graphical session; else the URL printed is it."""
    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY")
    )
    if graphical and sys.stdout.isatty():
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)


def run_ui(job: str | None, *, port: int, tracking_uri: str | None, browser: bool) -> None:
    """Starts MLflow's UI on the store (a tracking server's own UI is used
    as it is), prints the URL of the job's runs table and, at a graphical
    session, opens it; serves until Ctrl-C or a termination signal."""
    from mlflow import MlflowClient

    from hydraflow.errors import StoreError, StoreNotFoundError
    from hydraflow.signals import handle_termination
    from hydraflow.store import retry_busy, sqlite_path
    from hydraflow.store import tracking_uri as resolve_uri

    uri = resolve_uri(tracking_uri, Path.cwd())
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise StoreNotFoundError(str(path))
    try:
        experiment_id = retry_busy(lambda: prepare(MlflowClient(uri), uri, job))
    except HydraflowError:
        raise
    except Exception as error:
        raise StoreError(uri, error) from error
    if path is None:
        from hydraflow.remote import without_credentials

        show(experiment_url(without_credentials(uri).rstrip("/"), experiment_id), browser)
        return
    handle_termination()
    base = f"http://{HOST}:{port}"
    with server_log() as log, mlflow_server(uri, port, log) as process:
        wait_until_up(base, process, Path(log.name))
        show(experiment_url(base, experiment_id), browser)
        print(f"hydraflow: MLflow's UI on {uri}; Ctrl-C stops it", file=sys.stderr)
        # Waited in short steps: a signal the kernel hands to one of polars'
        # threads (the runs were loaded) would not interrupt a blocking wait.
        while process.poll() is None:
            time.sleep(0.2)
        raise ServerFailed("MLflow's server exited", Path(log.name))


def show(url: str, browser: bool) -> None:
    print(url, flush=True)
    if browser:
        open_browser(url)
