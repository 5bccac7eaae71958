"""Stores behind a URI, with real processes and sockets: a password in the URI
is never printed or stored, a server that does not answer (a closed port, or
one that accepts and never answers) fails within seconds with one line, and
a missing database driver is named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.remote import APP_SECONDS, Unreachable, check_reachable, masked
from hydraflow.store import StoreError

from tests.conftest import HYDRAFLOW
from tests.services import TrackingServer, tracking_server

__all__ = ["tracking_server"]  # the fixture this module uses

PASSWORD = "s3cr3t-PW"


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (the kernel does, from its backlog)
    and never answers: the bound socket never reads."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def hydraflow_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [HYDRAFLOW, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **env},
    )


def run_python(
    folder: Path, script: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python script args` in `folder`, as a user starts an app."""
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**environment, **env},
    )


def holding_the_password(folder: Path, *outputs: str) -> list[str]:
    """The outputs, and the files under `folder`, that hold the password."""
    texts = [*outputs, *(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())]
    return [text for text in texts if PASSWORD in text]


def assert_one_masked_line(output: str, uri: str) -> None:
    assert PASSWORD not in output
    assert output.count("\n") == 1, output
    assert masked(uri) in output
    assert "Traceback" not in output


def test_masked_uris() -> None:
    assert masked("http://alice:pw@host:5000/x") == "http://alice:***@host:5000/x"
    assert masked("see postgresql+psycopg2://u:p:w@db/mlflow.") == (
        "see postgresql+psycopg2://u:***@db/mlflow."
    )
    assert masked("mssql://db/x?user=u&password=pw&a=1") == "mssql://db/x?user=u&password=***&a=1"
    assert masked("app +db.password=pw 'x.db_pwd=a b' --secret=\"a b\" n=1") == (
        "app +db.password=*** 'x.db_pwd=***' --secret=*** n=1"
    )
    assert masked("f(['DB.PASSWORD=pw', 'password_len=3', 'secretary=x'])") == (
        "f(['DB.PASSWORD=***', 'password_len=3', 'secretary=x'])"
    )
    # SQLAlchemy reads a `/` in a password as part of it.
    assert masked("postgresql+psycopg2://alice:S3cr/tPW@127.0.0.1:1/db failed") == (
        "postgresql+psycopg2://alice:***@127.0.0.1:1/db failed"
    )
    for unchanged in ("http://host:5000/a", "http://alice@host", "sqlite:////tmp/a:b@c.db"):
        assert masked(unchanged) == unchanged


@pytest.mark.slow
def test_the_cli_fails_at_once_on_a_closed_port(tmp_path: Path, closed_port: int) -> None:
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port}"
    start = time.monotonic()
    result = hydraflow_cli("runs", "--tracking-uri", uri, cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert elapsed < 10, elapsed
    assert_one_masked_line(result.stdout + result.stderr, uri)
    assert "connection refused" in result.stderr


@pytest.mark.slow
def test_load_fails_within_seconds_on_a_server_that_never_answers(silent_port: int) -> None:
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{silent_port}"
    start = time.monotonic()
    with pytest.raises(StoreError) as raised:
        hydraflow.load(tracking_uri=uri)
    assert time.monotonic() - start < 10
    assert PASSWORD not in str(raised.value)
    assert f"{masked(uri)}: no answer within 5 s (timed out)" in str(raised.value)


APP = """
import hydraflow

@hydraflow.main({"a": 1}, tracking_uri=%r)
def app(run, cfg):
    print("app ran")

if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_an_app_fails_within_seconds_on_a_server_that_never_answers(
    tmp_path: Path, silent_port: int
) -> None:
    uri = f"http://bob:{PASSWORD}@127.0.0.1:{silent_port}"
    (tmp_path / "app.py").write_text(textwrap.dedent(APP % uri))
    start = time.monotonic()
    result = run_python(tmp_path, "app.py")
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    assert "app ran" not in result.stdout
    error = [line for line in result.stderr.splitlines() if "hydraflow: error:" in line]
    assert error == [
        f"hydraflow: error: cannot use the MLflow store {masked(uri)}: "
        "no answer within 20 s (timed out)"
    ]
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_app_fails_at_once_on_a_refused_connection(tmp_path: Path, closed_port: int) -> None:
    """A refused connection is a definite answer: the app once waited its
    full 20 s for it, as for a server that never answers."""
    uri = f"http://bob:{PASSWORD}@127.0.0.1:{closed_port}"
    start = time.monotonic()
    with pytest.raises(Unreachable, match=r"^connection refused"):
        check_reachable(uri, APP_SECONDS)
    assert time.monotonic() - start < 2
    (tmp_path / "app.py").write_text(textwrap.dedent(APP % uri))
    start = time.monotonic()
    result = run_python(tmp_path, "app.py")
    assert time.monotonic() - start < APP_SECONDS / 2  # the interpreter's start, not a wait
    assert result.returncode == 2
    assert "app ran" not in result.stdout
    assert result.stderr.splitlines() == [
        f"hydraflow: error: cannot use the MLflow store {masked(uri)}: connection refused "
        "(nothing listens on that port: is the server running?)"
    ]


# Hides a module as if it were not installed: a real ModuleNotFoundError.
HIDE_MODULE = """
import os, sys

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == os.environ["HIDDEN_MODULE"]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("uri", "module", "package"),
    [
        ("postgresql://u:{pw}@127.0.0.1:9/db", "psycopg", "psycopg[binary]"),
        ("postgresql+psycopg2://u:{pw}@127.0.0.1:9/db", "psycopg2", "psycopg2-binary"),
    ],
)
def test_a_missing_database_driver_is_named(
    tmp_path: Path, uri: str, module: str, package: str
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HIDE_MODULE)
    uri = uri.format(pw=PASSWORD)
    result = hydraflow_cli(
        "runs",
        "--tracking-uri",
        uri,
        cwd=tmp_path,
        PYTHONPATH=str(tmp_path / "site"),
        HIDDEN_MODULE=module,
    )
    assert result.returncode == 2
    assert_one_masked_line(result.stderr, uri)
    assert f"its database driver '{module}' is not installed: pip install '{package}'" in (
        result.stderr
    )
    # A bare postgresql:// is psycopg 3; the cluster extra brings psycopg2.
    psycopg2_named = "or write postgresql+psycopg2:// to use psycopg2" in result.stderr
    assert psycopg2_named == (module == "psycopg")


@pytest.mark.slow
def test_a_driver_sqlalchemy_has_no_dialect_for_is_one_masked_line(tmp_path: Path) -> None:
    uri = f"postgresql+psycopg3://u:{PASSWORD}@127.0.0.1:9/db"
    result = hydraflow_cli("runs", "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 2
    assert_one_masked_line(result.stderr, uri)
    assert "Can't load plugin: sqlalchemy.dialects:postgresql.psycopg3" in result.stderr


@pytest.mark.slow
def test_a_password_never_reaches_the_output_or_the_store(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """MLflow prints each run's URL as it ends it; the server ignores the
    credentials (no auth), so the URI with a password works."""
    uri = tracking_server.uri.replace("http://", f"http://alice:{PASSWORD}@")
    (tmp_path / "credentials_app.py").write_text(textwrap.dedent(APP % None))
    result = run_python(tmp_path, "credentials_app.py", "-m", "a=7,8", MLFLOW_TRACKING_URI=uri)
    assert result.returncode == 0, result.stderr
    assert "View run" in result.stdout
    assert "alice:***@" in result.stdout
    client = mlflow.MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name("credentials_app")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    for run in runs:
        client.download_artifacts(
            run.info.run_id, "credentials_app.log", str(tmp_path / run.info.run_id)
        )
    assert len(list(tmp_path.rglob("credentials_app.log"))) >= 2
    stored = [str(run.to_dictionary()) for run in runs]
    assert not holding_the_password(tmp_path, result.stdout, result.stderr, *stored)


FAILING_APP = """
import os
import mlflow
import hydraflow

@hydraflow.main({"a": 1})
def app(run, cfg):
    mlflow.MlflowClient(os.environ["OTHER_SERVER"]).get_experiment("0")  # its error names the URL

if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_an_mlflow_error_mid_run_is_shown_and_logged_masked(
    tmp_path: Path, closed_port: int
) -> None:
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port}"
    (tmp_path / "app.py").write_text(textwrap.dedent(FAILING_APP))
    result = run_python(tmp_path, "app.py", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", OTHER_SERVER=uri)
    assert result.returncode == 1
    assert f"API request to {masked(uri)}/api/2.0/mlflow/experiments/get" in result.stderr
    [run] = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["1"])
    assert run.info.status == "FAILED"
    log = Path(run.info.artifact_uri.removeprefix("file://")) / "app.log"
    assert masked(uri) in log.read_text()
    assert not holding_the_password(tmp_path, result.stdout, result.stderr)
