"""A PostgreSQL store named directly by its URI, with a real server that asks
for a password: a wrong password is one masked line at once, and a server
that accepts connections but never answers (its postmaster stopped by
SIGSTOP) is one line after the promised time, with Ctrl-C and SIGTERM still
stopping hydraflow; MLflow's own engine for the URI gives up too. Time
bounds here are generous guards against a hang, not measurements."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.errors import StoreError
from hydraflow.remote import LOGIN_SECONDS, check_reachable, masked

from tests.conftest import HYDRAFLOW
from tests.services import Daemons, free_port, postgres_bin, private_dir, unavailable, wait_until

pytestmark = pytest.mark.slow  # a real PostgreSQL server, apps and CLI processes

PASSWORD = "pg-s3cr3t-PW"
WRONG = "wr0ng-PW"


@dataclass
class Postgres:
    """A PostgreSQL server on 127.0.0.1 where `alice` logs in with PASSWORD
    to her database `db`; `postmaster` is the server's main process."""

    port: int
    postmaster: int
    socket_folder: Path

    def uri(self, password: str = PASSWORD, database: str = "db") -> str:
        return f"postgresql+psycopg2://alice:{password}@127.0.0.1:{self.port}/{database}"

    def admin_uri(self, database: str) -> str:
        """The administrator's URI, through the local socket."""
        return (
            f"postgresql+psycopg2://postgres@/{database}?host={self.socket_folder}&port={self.port}"
        )

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The postmaster stopped: the kernel still accepts connections, no
        one answers them. Resumed however the test ends."""
        os.kill(self.postmaster, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.postmaster, signal.SIGCONT)


def start_password_postgres(daemons: Daemons, root: Path) -> Postgres:
    import psycopg2

    bin_dir = postgres_bin()
    data = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-N"]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256"]
    subprocess.run(
        initdb, user="postgres", group="postgres", cwd=root, check=True, capture_output=True
    )
    port = free_port()
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
    argv += ["-k", str(root), "-c", "fsync=off"]
    server = daemons.start(
        argv, root / "postgres.log", user="postgres", stop_signal=signal.SIGINT, cwd=root
    )
    # The administrator comes through the local socket (trust); alice by TCP.
    admin = {"host": str(root), "port": port, "user": "postgres", "dbname": "postgres"}

    def accepts() -> bool:
        try:
            psycopg2.connect(**admin).close()
        except psycopg2.OperationalError:
            return False
        return True

    wait_until(accepts, "PostgreSQL", root / "postgres.log")
    connection = psycopg2.connect(**admin)
    connection.autocommit = True
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}'")
        cursor.execute("CREATE DATABASE db OWNER alice")
        cursor.execute("CREATE DATABASE admins")  # MLflow's tables there are not alice's
    return Postgres(port, server.pid, root)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if os.geteuid() != 0:
        unavailable("PostgreSQL", "the test database starts as the `postgres` user, from root")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("PostgreSQL", "the driver psycopg2 is not installed")
    daemons = Daemons()
    root = private_dir("hydraflow-pg-password-", owner="postgres")
    root.chmod(0o700)
    try:
        yield start_password_postgres(daemons, root)
    finally:
        daemons.stop()
        shutil.rmtree(root, ignore_errors=True)


APP = """
from dataclasses import dataclass
import hydraflow

@dataclass
class Config:
    seed: int = 0

@hydraflow.main(Config)
def app(run, cfg):
    print("app ran")

if __name__ == "__main__":
    app()
"""


def environment(uri: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri}


def start(argv: list[str], folder: Path, uri: str) -> subprocess.Popen[str]:
    """A process in a session of its own (so that the test can stop all of it)."""
    return subprocess.Popen(
        argv,
        cwd=folder,
        env=environment(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def finish(process: subprocess.Popen[str], started: float, guard: float) -> Outcome:
    """The process's outcome; past `guard` seconds its group is killed and the test fails."""
    try:
        stdout, stderr = process.communicate(timeout=guard)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{process.args!r} still ran after {guard} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left behind
    return Outcome(process.returncode, stdout, stderr, time.monotonic() - started)


def run(argv: list[str], folder: Path, uri: str, guard: float) -> Outcome:
    started = time.monotonic()
    return finish(start(argv, folder, uri), started, guard)


def the_app(folder: Path) -> list[str]:
    (folder / "train.py").write_text(textwrap.dedent(APP))
    return [sys.executable, "train.py", "-m", "seed=5"]


def assert_one_error_line(outcome: Outcome, uri: str, reason: str) -> None:
    errors = [line for line in outcome.stderr.splitlines() if masked(uri) in line]
    assert len(errors) == 1, outcome.stderr
    assert errors[0].endswith(f"cannot use the MLflow store {masked(uri)}: {reason}"), errors
    assert "Traceback" not in outcome.stderr
    assert "retried" not in outcome.stderr  # MLflow's retry warnings
    assert "app ran" not in outcome.stdout


def password_shown(folder: Path, *outputs: str) -> bool:
    files = [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    return any(PASSWORD in text or WRONG in text for text in [*outputs, *files])


REFUSED = 'password authentication failed for user "alice"'


def test_a_wrong_password_is_one_masked_line_at_once(postgres: Postgres, tmp_path: Path) -> None:
    uri = postgres.uri(WRONG)
    cli = run([HYDRAFLOW, "runs", "--tracking-uri", uri], tmp_path, uri, guard=60)
    assert cli.returncode == 2, cli.stderr
    assert_one_error_line(cli, uri, REFUSED)
    assert cli.stderr.count("\n") == 1, cli.stderr
    app = run(the_app(tmp_path), tmp_path, uri, guard=60)
    assert app.returncode == 2, app.stderr
    assert_one_error_line(app, uri, REFUSED)
    started = time.monotonic()
    with pytest.raises(StoreError, match=REFUSED) as raised:
        hydraflow.load(tracking_uri=uri)
    seconds = time.monotonic() - started
    assert masked(uri) in str(raised.value)
    assert not password_shown(tmp_path, cli.stdout, cli.stderr, app.stdout, app.stderr)
    assert WRONG not in str(raised.value)
    # Far below MLflow's ten retries (about 100 s): no retry at all.
    print(f"wrong password: cli {cli.seconds:.1f} s, app {app.seconds:.1f} s, load {seconds:.1f} s")
    assert max(cli.seconds, app.seconds, seconds) < 30


def test_the_right_password_reads_and_writes(postgres: Postgres, tmp_path: Path) -> None:
    """The login check lets a good store through, and prints no password."""
    uri = postgres.uri()
    app = run(the_app(tmp_path), tmp_path, uri, guard=300)
    assert app.returncode == 0, app.stderr
    assert "app ran" in app.stdout
    cli = run([HYDRAFLOW, "runs", "--tracking-uri", uri], tmp_path, uri, guard=120)
    assert cli.returncode == 0, cli.stderr
    assert len(hydraflow.load(tracking_uri=uri)) == 1
    assert not password_shown(tmp_path, cli.stdout, cli.stderr, app.stdout, app.stderr)


def test_a_frozen_server_is_one_line_after_the_promised_time(
    postgres: Postgres, tmp_path: Path
) -> None:
    uri = postgres.uri()
    with postgres.frozen():
        cli = run([HYDRAFLOW, "runs", "--tracking-uri", uri], tmp_path, uri, guard=60)
        app = run(the_app(tmp_path), tmp_path, uri, guard=120)
        started = time.monotonic()
        with pytest.raises(StoreError, match="no answer within 5 s"):
            hydraflow.load(tracking_uri=uri)
        seconds = time.monotonic() - started
    assert cli.returncode == 2, cli.stderr
    assert_one_error_line(cli, uri, "no answer within 5 s (timed out)")
    assert app.returncode == 2, app.stderr
    assert_one_error_line(app, uri, "no answer within 20 s (timed out)")
    assert not password_shown(tmp_path, cli.stdout, cli.stderr, app.stdout, app.stderr)
    print(f"frozen server: cli {cli.seconds:.1f} s, app {app.seconds:.1f} s, load {seconds:.1f} s")
    assert seconds < 30


@pytest.mark.parametrize(
    ("signum", "status", "argv"),
    [
        (signal.SIGINT, 130, "cli"),
        (signal.SIGTERM, 143, "cli"),
        (signal.SIGINT, 130, "app"),
        (signal.SIGTERM, 143, "app"),
    ],
)
def test_signals_stop_hydraflow_while_a_frozen_server_is_checked(
    postgres: Postgres, tmp_path: Path, signum: int, status: int, argv: str
) -> None:
    uri = postgres.uri()
    command = [HYDRAFLOW, "runs", "--tracking-uri", uri] if argv == "cli" else the_app(tmp_path)
    with postgres.frozen():
        process = start(command, tmp_path, uri)
        time.sleep(3)  # into the check (which waits 5 s, or 20 s for the app)
        signalled = time.monotonic()
        os.kill(process.pid, signum)
        outcome = finish(process, signalled, guard=30)
    assert outcome.returncode == status, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert not password_shown(tmp_path, outcome.stdout, outcome.stderr)
    print(f"{argv} stopped {outcome.seconds:.1f} s after {signal.Signals(signum).name}")


def test_a_user_without_rights_to_the_tables_is_one_line(
    postgres: Postgres, tmp_path: Path
) -> None:
    """alice may log in to a store whose tables the administrator made:
    PostgreSQL's refusal, one line, where `hydraflow runs` showed a traceback."""
    mlflow.MlflowClient(postgres.admin_uri("admins")).search_experiments()
    uri = postgres.uri(database="admins")
    cli = run([HYDRAFLOW, "runs", "--tracking-uri", uri], tmp_path, uri, guard=120)
    assert cli.returncode == 2, cli.stderr
    reason = "permission denied for table alembic_version (this database user lacks rights"
    assert reason in cli.stderr
    assert cli.stderr.count("\n") == 1, cli.stderr
    assert_one_error_line(cli, uri, cli.stderr.strip().split(": ", 2)[-1])
    with pytest.raises(StoreError, match=re.escape(reason)):
        hydraflow.load(tracking_uri=uri)
    assert not password_shown(tmp_path, cli.stdout, cli.stderr)


def test_mlflows_own_engine_gives_up_on_a_frozen_server(postgres: Postgres) -> None:
    """A server that freezes after the start-up check: MLflow's engine for
    the URI (made as MLflow makes it) gives up on a login, where it waited
    forever; the URI it names the store by is the user's."""
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from sqlalchemy.exc import OperationalError

    uri = postgres.uri()
    check_reachable(uri, 20)
    engine = create_sqlalchemy_engine(uri)
    assert engine.url.render_as_string(hide_password=False) == uri
    try:
        with postgres.frozen():
            started = time.monotonic()
            with pytest.raises(OperationalError, match="timeout expired"):
                engine.connect()
            seconds = time.monotonic() - started
    finally:
        engine.dispose()
    print(f"MLflow's engine gave up after {seconds:.1f} s")
    assert seconds < LOGIN_SECONDS + 20
