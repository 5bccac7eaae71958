"""Shared helpers: a project folder with a jobs file, the real CLI, and the
tutorial's store, built once per session and copied for each test that needs it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

HYDRAFLOW = str(Path(sys.executable).parent / "hydraflow")
EXAMPLES = Path(__file__).parent.parent / "examples"
TUTORIAL_FILES = ("example.py", "hydraflow.yaml", "submit.py")
TUTORIAL_JOBS = {"job_sequential": 6, "job_parallel": 6, "job_submit": 4}
# The tutorial's three jobs take about 30 s on a quiet 2-core machine and
# several times that under load; whichever test comes first builds them.
TUTORIAL_TIMEOUT = 600


# Fixtures that start services or build the tutorial: a test using one is
# marked slow, so `make check` starts none of them.
SLOW_FIXTURES = frozenset({"tutorial_store", "slurm_cluster", "tracking_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Checks the slow marks, and gives a test that may build the session's
    tutorial store the time for it."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        slow_ones = fixtures & SLOW_FIXTURES
        if slow_ones and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(slow_ones)}: mark it slow")
        if "tutorial_store" in fixtures and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TUTORIAL_TIMEOUT))


# A program that records its arguments (one JSON line per call) and can sleep
# or fail: `record.py [--sleep S] [--fail-if TEXT:STATUS] ARGS...`.
RECORD = """
import json, os, sys, time
args = sys.argv[1:]
if args[:1] == ["--sleep"]:
    time.sleep(float(args[1]))
    args = args[2:]
fail = None
if args[:1] == ["--fail-if"]:
    fail, args = args[1], args[2:]
with open(os.environ.get("RECORD_FILE", "calls.jsonl"), "a") as out:
    out.write(json.dumps({"args": args, "pid": os.getpid(), "start": time.time()}) + "\\n")
print("ran", " ".join(args))
print("to stderr", file=sys.stderr)
if fail:
    text, status = fail.rsplit(":", 1)
    if any(text in a for a in args):
        sys.exit(int(status))
"""


@pytest.fixture(autouse=True)
def tracking_uri_restored() -> Iterator[None]:
    """MLflow's tracking URI and stores as they were before each test:
    `set_tracking_uri` (which hydraflow's store calls) also sets
    MLFLOW_TRACKING_URI, which every later subprocess of the test process
    would record its runs in; and MLflow keeps one store per URI, so a
    relative `sqlite:///mlflow.db` would reach the folder of the test that
    opened it first (MLflow's SQL store keeps its engines, with their pooled
    connections, by URI too)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        from hydraflow import store

        sys.modules["mlflow"].set_tracking_uri(None)
        store.forget_cached_stores()
        store.forget_opened()
    sql_store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if sql_store is not None:
        engines = sql_store.SqlAlchemyStore._engine_map
        for engine in engines.values():
            engine.dispose()
        engines.clear()
    if "hydraflow.store" in sys.modules:  # after the engines: no lock left to lose
        sys.modules["hydraflow.store"].forget_kept()
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (state, parent, ...)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Running, not ended (a zombie is ended)."""
    try:
        return proc_stat(pid)[0] != "Z"
    except OSError:
        return False


def warm_server_of(pid: int) -> int | None:
    """hydraflow's warm server, its child started as `python -c`, if it has one."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                is_server = cmdline.read().split(b"\0")[1:2] == [b"-c"]
            if is_server and int(proc_stat(entry)[1]) == pid:
                return int(entry)
    return None


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed `hydraflow` command, as a user runs it (not on a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [HYDRAFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def project(tmp_path: Path) -> Callable[[str], Path]:
    """Writes a hydraflow.yaml (dedented) and record.py into a fresh folder."""

    def make(jobs_yaml: str) -> Path:
        (tmp_path / "hydraflow.yaml").write_text(textwrap.dedent(jobs_yaml))
        (tmp_path / "record.py").write_text(RECORD)
        return tmp_path

    return make


def recorded(folder: Path) -> list[list[str]]:
    import json

    path = folder / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["args"] for line in path.read_text().splitlines()]


def user_environment() -> dict[str, str]:
    """A user's shell: this environment's executables first on PATH, the
    default store (no MLFLOW_TRACKING_URI) and no NO_COLOR."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NO_COLOR")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Tutorial:
    """examples/ after `make tutorial`: its folder, and what each job's first
    `hydraflow run` printed on stderr."""

    folder: Path
    first_stderr: dict[str, str]


@pytest.fixture(scope="session")
def tutorial_store(tmp_path_factory: pytest.TempPathFactory) -> Tutorial:
    """The tutorial's three jobs, run once for the whole session (the slowest
    set-up there is) — once for all pytest-xdist workers too, under a lock in
    their common temporary directory. Read it, never change it:
    `tutorial_copy` gives a test its own."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_tutorial(tmp_path_factory.mktemp("tutorial"))
    shared = tmp_path_factory.getbasetemp().parent / "tutorial"
    with FileLock(f"{shared}.lock"):
        if not (shared / "first_stderr.json").exists():
            build_tutorial(shared)
    first_stderr = json.loads((shared / "first_stderr.json").read_text())
    return Tutorial(shared / "examples", first_stderr)


def build_tutorial(root: Path) -> Tutorial:
    folder = root / "examples"
    folder.mkdir(parents=True)
    for name in TUTORIAL_FILES:
        shutil.copy(EXAMPLES / name, folder / name)
    first_stderr = {}
    for job in TUTORIAL_JOBS:
        result = subprocess.run(
            [HYDRAFLOW, "run", job],
            cwd=folder,
            env=user_environment(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        first_stderr[job] = result.stderr
    (root / "first_stderr.json").write_text(json.dumps(first_stderr))
    return Tutorial(folder, first_stderr)


@pytest.fixture
def tutorial_copy(tutorial_store: Tutorial, tmp_path: Path) -> Path:
    """A copy of the tutorial's folder, store and records of its own."""
    return copy_project(tutorial_store.folder, tmp_path / "examples")


def copy_project(source: Path, target: Path) -> Path:
    """Copies a launch folder whose SQLite files (the MLflow store, the CLI's
    record of finished commands) name their own folder: each text value that
    holds `source`'s path gets `target`'s, so the copy stands on its own."""
    shutil.copytree(source, target, symlinks=True)
    for database in target.rglob("*.db"):
        replace_text(database, str(source), str(target))
    return target


def replace_text(database: Path, old: str, new: str) -> None:
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                name = column[1]
                connection.execute(
                    f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                    f'WHERE typeof("{name}") = \'text\' AND instr("{name}", ?) > 0',
                    (old, new, old),
                )


def run_in_own_group(
    command: list[str], cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Runs `command` in its own session; its process group (an app's joblib
    workers, say) is killed when it times out, and whatever it left behind is
    killed when it ends — also when pytest-timeout stops the test."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process.pid)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command} timed out after {timeout} s:\n{stdout[-2000:]}{stderr[-2000:]}")
    finally:
        kill_group(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture
def launch_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A launch directory with its own store, for tests that track in this
    process; MLflow's and hydraflow's global state reset after."""
    import mlflow
    from hydraflow import store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store.forget_opened()
    try:
        yield tmp_path
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        store.forget_opened()


@contextlib.contextmanager
def default_store_in(folder: Path) -> Iterator[Path]:
    """Works in `folder`, where `load()` finds `mlflow.db` by default
    (MLFLOW_TRACKING_URI unset meanwhile)."""
    env = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with contextlib.chdir(folder):
            yield folder
    finally:
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
