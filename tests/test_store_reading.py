"""Reading a store that a writer left in a bad moment or that is no store,
with MLflow's own reading and SQLite's as the oracles; and `hydraflow runs
--format json` as strict JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydraflow
import pytest
from hydraflow._core import StoreSnapshot
from hydraflow.analysis.reading import RAW_TAGS, read_pages, read_sql, table_layout
from hydraflow.errors import StoreError
from hydraflow.store import connect_read_only

from tests.conftest import run_cli
from tests.test_histories_faults import as_user

RUNS = 30

# MLflow writes the runs, as a user's script would (MLflow's stores are in
# rollback-journal mode).
WRITE_RUNS = f"""
import mlflow
mlflow.set_tracking_uri("sqlite:///mlflow.db")
for i in range({RUNS}):
    with mlflow.start_run():
        mlflow.log_param("x", i)
        mlflow.log_metric("m", i)
"""

# A writer killed in the middle of a transaction whose changes already
# reached the database file (a cache of one page spills them there).
KILLED_WRITER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")
db.execute("BEGIN")
db.execute("UPDATE tags SET value = value || '-x'")
db.execute("UPDATE latest_metrics SET value = -1")
os.kill(os.getpid(), 9)
"""

# MLflow's reading, the oracle: each run's id, param x and metric m.
MLFLOW_READS = """
import json, sys, mlflow
found = mlflow.search_runs(search_all_experiments=True, output_format="list")
print(json.dumps(sorted([r.info.run_id, r.data.params["x"], r.data.metrics["m"]] for r in found)))
"""


def python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with MLflow's store of RUNS finished runs, no journal."""
    folder = tmp_path_factory.mktemp("committed")
    assert python(WRITE_RUNS, cwd=folder).returncode == 0
    return folder / "mlflow.db"


@pytest.fixture
def interrupted(committed: Path, tmp_path: Path) -> Path:
    """That store in a fresh folder, after a writer died mid-transaction:
    its file holds uncommitted pages, and a hot journal lies beside it."""
    folder = tmp_path / "store"
    folder.mkdir()
    folder.chmod(0o755)
    path = folder / "mlflow.db"
    shutil.copy(committed, path)
    killed = python(KILLED_WRITER, str(path), cwd=folder)
    assert killed.returncode == -9, killed.stderr
    assert Path(f"{path}-journal").stat().st_size > 0
    return path


def mlflow_reading(folder: Path) -> list[list[Any]]:
    done = python(MLFLOW_READS, cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    read: list[list[Any]] = json.loads(done.stdout)
    return read


def copied(path: Path, folder: Path) -> Path:
    """The store and its journal, as they are, in another folder."""
    folder.mkdir()
    for name in (path.name, f"{path.name}-journal"):
        shutil.copy(path.parent / name, folder / name)
    return folder / path.name


def test_a_hot_journal_is_rolled_back_and_the_committed_runs_read(
    interrupted: Path, tmp_path: Path
) -> None:
    """MLflow reads the runs as last committed (it rolls the journal back):
    `hydraflow runs` and `load` read the same, never the half-written values."""
    expected = mlflow_reading(copied(interrupted, tmp_path / "oracle").parent)
    assert len(expected) == RUNS and {m for *_, m in expected} == set(map(float, range(RUNS)))
    listed = run_cli("runs", "--status", "all", "--format", "json", cwd=interrupted.parent)
    assert listed.returncode == 0, listed.stderr
    got = sorted([r["run_id"], str(r["x"]), r["metrics.m"]] for r in json.loads(listed.stdout))
    assert got == expected
    assert not Path(f"{interrupted}-journal").exists()


def test_the_page_reader_reads_the_rolled_back_store_as_sqlite_selects_it(
    interrupted: Path, committed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's file held the killed writer's pages: read from pages
    after the rollback, the tables are SQLite's SELECT and the last commit's."""
    with contextlib.closing(connect_read_only(committed)) as db:
        layout = table_layout(db, "tags", list(RAW_TAGS))
    assert layout is not None
    unlocked = StoreSnapshot(interrupted)  # read with no lock: as no reader may
    unlocked.pin()
    values = unlocked.read_table(*layout)[2]
    assert any(v.endswith("-x") for v in values), "the writer's pages reached the file"
    caplog.set_level(logging.DEBUG, logger="hydraflow")
    frame = hydraflow.load(tracking_uri=f"sqlite:///{interrupted}", status=None).frame
    assert "through SQL" not in caplog.text  # the pages were read
    assert sorted(frame["metrics.m"].to_list()) == list(map(float, range(RUNS)))
    with contextlib.closing(connect_read_only(interrupted)) as db:
        snapshot = StoreSnapshot(interrupted)
        db.execute("BEGIN")
        pages, sql = read_pages(db, snapshot), read_sql(db)
    with contextlib.closing(connect_read_only(committed)) as db:
        db.execute("BEGIN")
        before = read_sql(db)
    assert pages is not None
    for name in ("runs", "tags", "latest"):
        key = ["run_uuid", "key"] if name != "runs" else ["run_uuid"]
        got = getattr(pages, name).sort(key)
        assert got.equals(getattr(sql, name).sort(key), null_equal=True), name
        assert got.equals(getattr(before, name).sort(key), null_equal=True), name


@contextlib.contextmanager
def read_only_mount(folder: Path) -> Iterator[None]:
    if subprocess.run(["mount", "--bind", "-o", "ro", folder, folder]).returncode != 0:
        pytest.skip("a read-only bind mount needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


HOT_JOURNAL_HINT = "a hot journal from an interrupted writer needs rolling back"


def test_a_hot_journal_on_a_network_file_system_is_left_to_its_writer(
    interrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There a live writer's lock on another machine may not be seen, and
    rolling its journal back would corrupt the store: the reader says so."""
    from hydraflow import store

    mounts = tmp_path / "mounts"
    mounts.write_text(f"server:/export {interrupted.parent.resolve()} nfs4 rw 0 0\n")
    monkeypatch.setattr(store, "MOUNTS", mounts)
    journal = Path(f"{interrupted.resolve()}-journal")
    size = journal.stat().st_size
    with pytest.raises(StoreError, match=HOT_JOURNAL_HINT):
        hydraflow.load(tracking_uri=f"sqlite:///{interrupted}")
    assert journal.stat().st_size == size  # not rolled back


def test_without_write_access_a_hot_journal_is_explained(interrupted: Path) -> None:
    """A reader that may not write cannot roll the journal back: it says so,
    and reads nothing of the half-written transaction."""
    with read_only_mount(interrupted.parent):
        listed = run_cli("runs", "--status", "all", cwd=interrupted.parent)
        with pytest.raises(StoreError, match=HOT_JOURNAL_HINT):
            hydraflow.load(tracking_uri=f"sqlite:///{interrupted}")
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert HOT_JOURNAL_HINT in listed.stderr
    assert "only with write access to the store and its directory" in listed.stderr
    assert listed.stdout == ""


def test_another_apps_database_is_no_mlflow_store(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db, db:
        db.execute("CREATE TABLE notes (text)")
    listed = run_cli("runs", cwd=tmp_path)
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert "no such table: experiments (the file is damaged or not an MLflow database" in (
        listed.stderr
    )


# MLflow makes a new store's first tables, then runs its migrations one by
# one: the state a reader meets while the first run of a sweep starts.
FIRST_TABLES = """
import sys, sqlalchemy
from mlflow.store.tracking.dbmodels.initial_models import Base
Base.metadata.create_all(sqlalchemy.create_engine(f"sqlite:///{sys.argv[1]}"))
"""


@pytest.fixture
def first_tables(tmp_path: Path) -> Path:
    path = tmp_path / "mlflow.db"
    subprocess.run([sys.executable, "-c", FIRST_TABLES, str(path)], check=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_schema")}
    assert "experiments" in tables and "latest_metrics" not in tables
    return path


@pytest.mark.parametrize("state", ["an empty file", "MLflow's first tables"])
def test_a_store_being_created_has_no_runs_yet(
    tmp_path: Path, state: str, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "mlflow.db"
    if state == "an empty file":  # SQLite's file before its first commit
        path.touch()
    else:
        request.getfixturevalue("first_tables")
    assert hydraflow.load(tracking_uri=path).frame.height == 0
    listed = run_cli("runs", cwd=tmp_path)
    assert (listed.returncode, listed.stdout) == (1, "")
    assert "no FINISHED runs" in listed.stderr and "Traceback" not in listed.stderr
    (tmp_path / "mlruns").mkdir()
    assert list(hydraflow.iter_run_dirs(tmp_path / "mlruns")) == []
    assert hydraflow.get_experiment_names(tmp_path / "mlruns") == []


def test_tables_missing_beside_runs_are_a_damaged_store(first_tables: Path) -> None:
    with contextlib.closing(sqlite3.connect(first_tables)) as db, db:
        db.execute("INSERT INTO experiments (experiment_id, name) VALUES (1, 'e')")
        db.execute("INSERT INTO runs (run_uuid, experiment_id) VALUES ('r', 1)")
    with pytest.raises(StoreError, match="no such table: latest_metrics"):
        hydraflow.load(tracking_uri=first_tables)


# Plain MLflow makes a store (no template: its ~60 migrations, each committed).
MLFLOW_MAKES_A_STORE = (
    "import mlflow; mlflow.MlflowClient('sqlite:///mlflow.db').search_experiments()"
)


def test_loads_racing_mlflow_making_a_store_never_fail(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", MLFLOW_MAKES_A_STORE],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    partial = 0
    try:
        while writer.poll() is None:
            if not (tmp_path / "mlflow.db").exists():
                continue
            with contextlib.closing(connect_read_only(tmp_path / "mlflow.db")) as db:
                tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            assert hydraflow.load(tracking_uri=tmp_path / "mlflow.db").frame.height == 0
            partial += tables < 20
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(writer.pid, 9)
        writer.wait()
    assert writer.returncode == 0 and partial > 0


def test_a_store_this_user_may_not_read_says_so(committed: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to be another user")
    folder = tmp_path / "closed"
    folder.mkdir()
    folder.chmod(0o777)  # writable by anyone: only reading the file is refused
    shutil.copy(committed, folder / "mlflow.db")
    (folder / "mlflow.db").chmod(0o600)
    hydraflow_command = str(Path(sys.executable).parent / "hydraflow")
    with as_user(65534, folder) as other_user:
        listed = subprocess.run(
            [*other_user, hydraflow_command, "runs"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert listed.returncode == 2, listed.stderr
    assert "unable to open database file (this user may not read the store)" in listed.stderr


def strict(constant: str) -> Any:
    raise ValueError(f"not strict JSON: {constant}")


def test_runs_as_json_is_strict_json_with_real_arrays_and_objects(tmp_path: Path) -> None:
    """NaN and infinities come out as null (as polars' `write_json` writes
    them), also inside lists; lists and lists of structs as JSON arrays and
    objects. (MLflow stores an infinite metric as the largest float: NaN
    is the metric that can be one, infinities come from the config.)"""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("exp")
    for value in [1.5, float("nan"), float("inf"), float("-inf")]:
        config = {"bound": value, "lst": [1, 2, 3], "points": [{"x": 1, "y": [value]}]}
        run = client.create_run(experiment, tags={"hydraflow.config": json.dumps(config)})
        client.log_metric(run.info.run_id, "loss", 0.5 if math.isinf(value) else value)
        client.set_terminated(run.info.run_id)
    listed = run_cli("runs", "--format", "json", "--sort", "start_time", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout, parse_constant=strict)
    assert [row["metrics.loss"] for row in rows] == [1.5, None, 0.5, 0.5]
    assert [row["bound"] for row in rows] == [1.5, None, None, None]
    assert [row["points"] for row in rows] == [[{"x": 1, "y": [1.5]}]] + [
        [{"x": 1, "y": [None]}]
    ] * 3
    assert all(row["lst"] == [1, 2, 3] for row in rows)


# A writer that keeps the store to itself: in locking_mode=EXCLUSIVE its
# first write takes a lock that it keeps until it closes the store.
EXCLUSIVE_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute(f"PRAGMA journal_mode = {sys.argv[2]}")
db.execute("PRAGMA locking_mode = EXCLUSIVE")
db.execute("UPDATE tags SET value = value")
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_a_writer_keeping_readers_out_is_named(
    committed: Path,
    tmp_path: Path,
    journal_mode: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Waiting for the store's lock says, after a while, which process
    holds it; giving up says it again with what to do."""
    from hydraflow import store

    path = Path(shutil.copy(committed, tmp_path / "mlflow.db"))
    monkeypatch.setattr(store, "READ_TIMEOUT", 2.0)
    monkeypatch.setattr(store, "WAIT_NOTICE", 0.5)
    argv = [sys.executable, "-c", EXCLUSIVE_WRITER, str(path), journal_mode]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "held\n"
            holder = f"process {writer.pid} (python"
            with pytest.raises(StoreError) as refused:
                hydraflow.load(tracking_uri=f"sqlite:///{path}")
        finally:
            assert writer.stdin is not None
            writer.stdin.close()
    assert writer.returncode == 0
    assert f"waiting up to 2 s for {holder}" in caplog.text
    message = str(refused.value)
    assert f"database is locked ({holder}) holds it locked" in message
    assert "locking_mode=EXCLUSIVE" in message
