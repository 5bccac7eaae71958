"""The Rust core's SQLite file reader and JSON shapes, with SQLite and
polars as the oracles: what a snapshot's `read_table` returns must be what a
SELECT in the same transaction returns, also while writers commit and
restart the log. (The typing of the configs decoded in bulk: test_types.py.)"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hydraflow._core import SqliteFileError, StoreSnapshot, json_representatives
from hydraflow.analysis import reading
from hydraflow.analysis.frame import config_columns
from hydraflow.analysis.reading import read_pages, read_sql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

cell = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    # SQLite stores a NaN as NULL: any other float comes back bit for bit.
    st.floats(allow_nan=False),
    st.text(max_size=40) | st.text(min_size=300, max_size=3000),
    st.binary(max_size=40) | st.binary(min_size=600, max_size=2000),
)


@contextlib.contextmanager
def database(path: Path, page_size: int) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA page_size = {page_size}")
        yield db
        db.commit()


def read_table(path: Path, root: int, columns: list[int], **selection: Any) -> list[list[Any]]:
    """A table read from pages, with no writer about (no transaction needed)."""
    snapshot = StoreSnapshot(path)
    snapshot.pin()
    return snapshot.read_table(root, columns, **selection)


def root_page(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)
        ).fetchone()
    return int(root)


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal, with -0.0 told from 0.0 (a float must come back bit for bit)."""
    return len(a) == len(b) and all(
        type(x) is type(y) and (x == y and math.copysign(1, x) == math.copysign(1, y))
        if isinstance(x, float)
        else x == y
        for x, y in zip(a, b, strict=True)
    )


@SETTINGS
@given(
    rows=st.lists(st.tuples(cell, cell, cell), max_size=250),
    page_size=st.sampled_from([512, 4096, 65536]),
    added=st.booleans(),
)
def test_read_table_returns_what_select_returns(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[Any, ...]],
    page_size: int,
    added: bool,
) -> None:
    path = tmp_path_factory.mktemp("read") / "t.db"
    with database(path, page_size) as db:
        db.execute("CREATE TABLE t (a, b, c)")  # no affinity: every storage class kept
        half = len(rows) // 2
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows[:half])
        if added:
            db.execute("ALTER TABLE t ADD COLUMN d")
        db.executemany("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", rows[half:])
        db.execute("DELETE FROM t WHERE rowid % 7 = 3")
    with contextlib.closing(sqlite3.connect(path)) as db:
        expected = db.execute("SELECT c, a, b FROM t ORDER BY rowid").fetchall()
    columns = read_table(path, root_page(path, "t"), [2, 0, 1, 3])
    assert all(
        same(got, list(want))
        for got, want in zip(columns, zip(*expected, strict=True), strict=False)
    )
    assert len(columns[0]) == len(expected)
    assert columns[3] == [None] * len(expected)


@SETTINGS
@given(
    keys=st.lists(st.sampled_from(["cfg", "ch.a", "ch.", "ch", "c", "x.ch.a", "chx"]), max_size=80)
)
def test_the_key_filter_keeps_exact_keys_and_prefixes(
    tmp_path_factory: pytest.TempPathFactory, keys: list[str]
) -> None:
    path = tmp_path_factory.mktemp("keys") / "k.db"
    with database(path, 512) as db:
        db.execute("CREATE TABLE k (key TEXT, value TEXT)")
        db.executemany("INSERT INTO k VALUES (?, ?)", [(k, f"{i}") for i, k in enumerate(keys)])
        db.execute("INSERT INTO k VALUES (NULL, 'no key'), (3, 'a number')")
    got = read_table(path, root_page(path, "k"), [1], key_column=0, exact=["cfg"], prefixes=["ch."])
    assert got == [[str(i) for i, k in enumerate(keys) if k == "cfg" or k.startswith("ch.")]]


def test_a_whole_real_comes_back_as_stored_and_the_frame_makes_it_a_float(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with database(path, 4096) as db:
        db.execute("CREATE TABLE r (x REAL)")
        db.executemany("INSERT INTO r VALUES (?)", [(1.0,), (2.5,), (-3.0,)])
    (column,) = read_table(path, root_page(path, "r"), [0])
    assert column == [1, 2.5, -3]
    assert pl.Series(column, dtype=pl.Float64, strict=False).to_list() == [1.0, 2.5, -3.0]


def test_wal_mode_reads_the_committed_frames_of_the_log(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA page_size = 512")
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # every commit stays in the log
    writer.execute("CREATE TABLE t (a, b)")
    try:
        for batch in range(5):
            writer.execute("BEGIN")
            rows = [(batch * 100 + i, "x" * (i * 13)) for i in range(100)]
            writer.executemany("INSERT INTO t VALUES (?, ?)", rows)
            writer.execute("UPDATE t SET b = 'updated' WHERE a % 17 = 0")
            writer.execute("COMMIT")
        writer.execute("BEGIN")
        writer.execute("INSERT INTO t VALUES (-1, 'not committed')")
        assert Path(f"{path}-wal").stat().st_size > 100_000
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
            snapshot = StoreSnapshot(path)
            reader.execute("BEGIN")
            expected = reader.execute("SELECT a, b FROM t ORDER BY rowid").fetchall()
            snapshot.pin()
            got = snapshot.read_table(root_page(path, "t"), [0, 1])
        assert got == [list(column) for column in zip(*expected, strict=True)]
        assert len(expected) == 500
    finally:
        writer.close()


def test_damage_is_refused_with_a_reason(tmp_path: Path) -> None:
    damaged = tmp_path / "d.db"
    damaged.write_bytes(b"SQLite format 3\0" + bytes(200))
    with pytest.raises(SqliteFileError) as broken:
        read_table(damaged, 2, [0])
    assert not broken.value.unsupported
    with pytest.raises(SqliteFileError, match="No such file"):
        read_table(tmp_path / "absent.db", 2, [0])


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_an_mlflow_store_reads_the_same_from_pages_and_sql(tmp_path: Path) -> None:
    """A store MLflow made itself: runs with tags, params, NaN and plain metrics."""
    import mlflow

    path = tmp_path / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("exp")
    for index in range(30):
        run = client.create_run(experiment, tags={"hydraflow.choice.db": f"db{index % 3}"})
        config = {"seed": index, "long": "x" * (index * 300)}
        client.set_tag(run.info.run_id, "hydraflow.config", json.dumps(config))
        client.log_metric(run.info.run_id, "loss", float("nan") if index == 4 else index / 3)
        client.log_metric(run.info.run_id, "acc", 1.0 - index / 100, step=2)
        if index % 5:
            client.set_terminated(run.info.run_id)
    client.delete_run(run.info.run_id)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        snapshot = StoreSnapshot(path)
        db.execute("BEGIN")
        sql = read_sql(db)
        pages = read_pages(db, snapshot)
    assert pages is not None
    for name in ("runs", "tags", "latest"):
        key = ["run_uuid", "key"] if name != "runs" else ["run_uuid"]
        got, want = getattr(pages, name).sort(key), getattr(sql, name).sort(key)
        assert got.equals(want, null_equal=True), name
    assert pages.runs.height == 30 and pages.tags.height == 60


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_a_write_lock_held_in_this_process_survives_a_load(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process
    holds on it: the reader keeps its descriptor open, so a writer in this
    process keeps its lock while `load` reads the same file. (A store in
    rollback-journal mode, where the write lock is a lock on the file.)"""
    import hydraflow
    import mlflow

    path = tmp_path / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    client.create_run(client.create_experiment("exp"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # RESERVED: no other process may write
    try:
        for _ in range(3):
            assert len(hydraflow.load(tracking_uri=f"sqlite:///{path}", status=None)) == 1
        assert "database is locked" in write_from_another_process(path)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    kept = open_descriptors().count(str(path))
    for _ in range(5):
        hydraflow.load(tracking_uri=f"sqlite:///{path}")
    assert open_descriptors().count(str(path)) == kept, "one descriptor per file, not per load"


def write_from_another_process(path: Path) -> str:
    """What another process hears when it tries to start writing: its stderr."""
    probe = (
        "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=0).execute('BEGIN IMMEDIATE')"
    )
    other = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60
    )
    return other.stderr


def test_the_lock_probe_sees_a_dropped_lock(tmp_path: Path) -> None:
    """The check above is sharp: closing a descriptor of the file in this
    process does drop the writer's lock."""
    path = tmp_path / "t.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (a)")
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert "database is locked" in write_from_another_process(path)
        path.open("rb").close()
        assert "database is locked" not in write_from_another_process(path)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def open_descriptors() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def test_representatives_are_the_first_of_each_shape() -> None:
    texts = ['{"a":1}', '{"a":2}', '{"a":1.5}', None, '{"a":"x"}', '{"a":3}', "not json", "{"]
    assert json_representatives(texts) == [0, 2, 4, 6]


def test_a_config_tag_that_is_not_json_gives_no_values() -> None:
    texts = pl.Series(['{"lr": 0.1, "seed": 1}', "{damaged", '["not", "an object"]', None])
    frame, _ = config_columns(texts)
    assert frame["lr"].to_list() == [0.1, None, None, None]
    assert frame["seed"].to_list() == [1, None, None, None]


WRITER = """
import json, sqlite3, sys, uuid
path, experiment, first, count, autocheckpoint = sys.argv[1:]
db = sqlite3.connect(path, timeout=30, isolation_level=None)
db.execute(f"PRAGMA wal_autocheckpoint = {autocheckpoint}")  # small: the log restarts often
for index in range(int(first), int(first) + int(count)):
    run = uuid.uuid4().hex
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
        " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
        " experiment_id)"
        " VALUES (?, ?, 'LOCAL', 'w', '', 'w', 'FINISHED', ?, ?, '', 'active', ?, ?)",
        (run, f"run-{index}", index, index + 1, f"/tmp/{run}", experiment),
    )
    config = json.dumps({"seed": index, "run": run, "pad": "x" * (index % 700)})
    db.execute(
        "INSERT INTO tags (key, value, run_uuid) VALUES ('hydraflow.config', ?, ?)", (config, run)
    )
    db.execute(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
        " VALUES ('loss', ?, 0, 0, 0, ?)", (index / 7, run)
    )
    db.execute("COMMIT")
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An MLflow store in WAL mode with one experiment (made once: MLflow's
    migrations take seconds), and that experiment's id."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    experiment = mlflow.MlflowClient(f"sqlite:///{path}").create_experiment("exp")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")
    return path, experiment


def store_from(template: tuple[Path, str], path: Path) -> tuple[Path, str]:
    path.write_bytes(template[0].read_bytes())
    return path, template[1]


def write_runs(
    store: tuple[Path, str], first: int, count: int, autocheckpoint: int = 4
) -> subprocess.Popen[str]:
    path, experiment = store
    arguments = [str(path), experiment, str(first), str(count), str(autocheckpoint)]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *arguments],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(writer: subprocess.Popen[str]) -> None:
    _, errors = writer.communicate(timeout=120)
    assert writer.returncode == 0, errors


def check_whole(frame: pl.DataFrame) -> None:
    """Every run once, with its own config and its own metric."""
    assert frame["run_id"].n_unique() == frame.height
    if frame.height:
        assert frame["run"].to_list() == frame["run_id"].to_list()
        assert frame["metrics.loss"].to_list() == [seed / 7 for seed in frame["seed"]]


def load(path: Path) -> pl.DataFrame:
    import hydraflow

    return hydraflow.load(tracking_uri=f"sqlite:///{path}").frame


@pytest.mark.slow  # MLflow's migrations, writer processes
@pytest.mark.parametrize("copied_back", [True, False], ids=["read-mark-0", "read-mark-above-0"])
def test_a_load_reads_the_commit_its_transaction_began_at(
    template: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    copied_back: bool,
) -> None:
    """A writer commits three runs after the load's transaction began and its
    snapshot was pinned, before any page is read: the load reads the commit
    its transaction began at, as SQL in it sees it, whole. With the log
    copied back into the file the transaction holds SQLite's read mark 0,
    which does not keep the log: the writer restarts it and overwrites the
    frames a reader of the log would take."""
    store = store_from(template, tmp_path / "mlflow.db")
    # An open connection keeps the log: the last one to close would copy it back and delete it.
    keeper = sqlite3.connect(store[0], isolation_level=None)
    keeper.execute("SELECT count(*) FROM sqlite_schema")
    finish(write_runs(store, 0, 20, autocheckpoint=0))
    if copied_back:
        busy, frames, copied = keeper.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and frames == copied > 0
    original = reading.table_layout
    writers: list[int] = []

    def commit_then_layout(db: sqlite3.Connection, table: str, columns: list[str]) -> Any:
        if not writers:
            writers.append(1)
            finish(write_runs(store, 20, 3))
        return original(db, table, columns)

    monkeypatch.setattr(reading, "table_layout", commit_then_layout)
    try:
        frame = load(store[0])
        assert writers and frame.height == 20
        check_whole(frame)
        monkeypatch.undo()
        assert load(store[0]).height == 23
    finally:
        keeper.close()


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_a_commit_before_the_pin_reads_again(
    template: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer commits between the snapshot noted before the transaction and
    its pin: which commit the transaction took is unknown, so the load reads
    again, in a new transaction."""
    store = store_from(template, tmp_path / "mlflow.db")
    finish(write_runs(store, 0, 5))
    original = reading.SqliteStore.experiment_names
    writers: list[int] = []

    def names_then_commit(db: sqlite3.Connection, experiments: Any) -> dict[int, str]:
        names = original(db, experiments)
        if not writers:
            writers.append(1)
            finish(write_runs(store, 5, 2))
        return names

    monkeypatch.setattr(reading.SqliteStore, "experiment_names", staticmethod(names_then_commit))
    with caplog.at_level("DEBUG", logger="hydraflow"):
        frame = load(store[0])
    assert frame.height == 7
    check_whole(frame)
    assert "moved under the read: again" in caplog.text
    assert "through SQL" not in caplog.text


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_loads_during_two_writers_are_whole_and_never_fewer(
    template: tuple[Path, str], tmp_path: Path
) -> None:
    """Two writers commit runs (each with its config tag and metric in one
    transaction) while small autocheckpoints copy the log into the file and
    restart it; every load sees each run once and whole, never fewer runs
    than the load before, and never an error."""
    store = store_from(template, tmp_path / "mlflow.db")
    per_writer = 400
    writers = [write_runs(store, 0, per_writer), write_runs(store, per_writer, per_writer)]
    seen = [0]
    try:
        while any(w.poll() is None for w in writers) or seen[-1] < 2 * per_writer:
            frame = load(store[0])
            check_whole(frame)
            assert frame.height >= seen[-1]
            seen.append(frame.height)
            assert len(seen) < 10_000, "the writers never finished"
    finally:
        for writer in writers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(writer.pid, 9)
    for writer in writers:
        finish(writer)
    assert seen[-1] == 2 * per_writer
    assert len(set(seen)) > 3, f"the loads overlapped the writes: {seen}"


MANY_STORES = """
import resource, sys
from pathlib import Path
import hydraflow
template, folder, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
for index in range(count):
    store = folder / f"{index}.db"
    store.write_bytes(template.read_bytes())
    assert len(hydraflow.load(tracking_uri=f"sqlite:///{store}", status=None)) == 1
print(len(list(Path("/proc/self/fd").iterdir())))
"""


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_a_process_loading_many_stores_keeps_few_descriptors(
    template: tuple[Path, str], tmp_path: Path
) -> None:
    """1,000 different stores loaded by a process allowed 64 descriptors:
    the reader closes a store's files once no other descriptor of the
    process refers to them."""
    store = store_from(template, tmp_path / "one.db")
    finish(write_runs(store, 0, 1))
    with contextlib.closing(sqlite3.connect(store[0])) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    folder = tmp_path / "stores"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", MANY_STORES, str(store[0]), str(folder), "1000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 32


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_a_log_that_keeps_moving_is_read_through_sql_visibly(
    template: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer commits in every transaction's first moments: after five
    reads begun again, SQL reads the store (whole); the debug log says why
    each time, and a slow fallback warns once per process."""
    store = store_from(template, tmp_path / "mlflow.db")
    finish(write_runs(store, 0, 3))
    original = reading.SqliteStore.experiment_names
    commits = [3]

    def names_then_commit(db: sqlite3.Connection, experiments: Any) -> dict[int, str]:
        names = original(db, experiments)
        finish(write_runs(store, commits[-1], 1))
        commits.append(commits[-1] + 1)
        return names

    monkeypatch.setattr(reading.SqliteStore, "experiment_names", staticmethod(names_then_commit))
    monkeypatch.setattr(reading, "SLOW_SQL_SECONDS", 0.0)
    monkeypatch.setattr(reading, "_warned_slow", set())
    with caplog.at_level("DEBUG", logger="hydraflow"), pytest.warns(RuntimeWarning) as warned:
        frame = load(store[0])
        monkeypatch.setattr(reading.SqliteStore, "experiment_names", staticmethod(original))
        monkeypatch.setattr(reading, "read_pages", lambda db, snapshot: None)
        assert load(store[0]).height == commits[-1]
    check_whole(frame)
    # The SQL read's own transaction began before its writer committed.
    assert frame.height == commits[-2] and len(commits) == reading.ATTEMPTS + 2
    assert caplog.text.count("moved under the read: again") == reading.ATTEMPTS
    assert "through SQL: the write-ahead log kept moving" in caplog.text
    assert "through SQL: a table layout the page reader does not know" in caplog.text
    assert [str(w.message).split(" in ")[0] for w in warned] == [
        f"hydraflow.load read {store[0]} through SQL"
    ]


RESTART = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=0)
print(db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0])
"""


def log_restart_is_busy(path: Path) -> bool:
    """Whether another process is kept from restarting the log (a reader's
    read mark holds it)."""
    result = subprocess.run(
        [sys.executable, "-c", RESTART, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "1"


@pytest.mark.slow  # MLflow's migrations, writer processes
def test_a_read_mark_held_in_this_process_survives_loads(
    template: tuple[Path, str], tmp_path: Path
) -> None:
    """A read transaction of this process holds a read mark in the `-shm`
    file; loads open and close descriptors of that file, and must not drop
    the mark (closing any descriptor of a file drops the process's locks on
    it), or another process could restart the log under the reader."""
    store = store_from(template, tmp_path / "mlflow.db")
    keeper = sqlite3.connect(store[0], isolation_level=None)
    keeper.execute("SELECT count(*) FROM sqlite_schema")
    finish(write_runs(store, 0, 5, autocheckpoint=0))
    reader = sqlite3.connect(store[0], isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone() == (5,)
        assert log_restart_is_busy(store[0])
        for _ in range(3):
            assert load(store[0]).height == 5
        assert log_restart_is_busy(store[0])
        Path(f"{store[0]}-shm").open("rb").close()  # the probe is sharp: this drops the mark
        assert not log_restart_is_busy(store[0])
    finally:
        reader.close()
        keeper.close()
