"""A new SQLite store from the cached template: the same database MLflow makes
alone (MLflow is the oracle), and MLflow's own creation whenever the template
cannot serve."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from hydraflow import store_template
from hydraflow.store import EXPERIMENT_TAGS, is_initialised, open_new_experiment, sqlite_path
from hydraflow.store_template import schema_head, seed_new_store

from tests.conftest import HYDRAFLOW, user_environment

# MLflow writes its Default experiment's creation time and its artifact
# folder (a path in the store's folder): the rest of every row is compared.
DEFAULT_EXPERIMENT_OWN = {"creation_time", "last_update_time", "artifact_location"}
PRAGMAS = ("page_size", "encoding", "auto_vacuum", "user_version", "application_id")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's cache folder, empty, in tmp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The oracle: a store MLflow created by itself, as `snapshot` sees it."""
    return snapshot(mlflow_alone(tmp_path_factory.mktemp("alone")))


def templates(cache: Path) -> list[Path]:
    return sorted((cache / "hydraflow" / store_template.FOLDER).glob("*"))


def uri_in(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def mlflow_alone(folder: Path) -> str:
    """A store MLflow created by itself (no hydraflow on the way)."""
    uri = uri_in(folder)
    mlflow.MlflowClient(uri).search_experiments()
    return uri


def database(uri: str) -> Path:
    path = sqlite_path(uri)
    assert path is not None
    return path


def snapshot(uri: str) -> dict[str, Any]:
    """Everything in the file a reader can tell apart, through sqlite3: the
    schema's SQL (tables, indexes, triggers), the file's settings, and every
    row of every table."""
    with contextlib.closing(sqlite3.connect(database(uri))) as db:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        schema = sorted((type_, name, table, unordered(sql)) for type_, name, table, sql in rows)
        tables = [name for type_, name, _, _ in schema if type_ == "table"]
        return {
            "mode": stat.S_IMODE(database(uri).stat().st_mode),
            "schema": schema,
            "pragmas": {name: db.execute(f"PRAGMA {name}").fetchall() for name in PRAGMAS},
            "rows": {table: rows_of(db, table) for table in tables},
        }


TABLE_CONSTRAINTS = ("CONSTRAINT ", "CHECK ", "FOREIGN KEY", "UNIQUE ", "PRIMARY KEY")


def unordered(sql: str | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A table's SQL as its lines, its constraints' in any order: MLflow's
    own creation orders them differently from one store to the next (alembic
    rebuilds a table from a set), so two stores it made alone differ so."""
    if sql is None:
        return None
    lines = [line.strip().rstrip(",").strip() for line in sql.splitlines()]
    constraints = sorted(line for line in lines if line.startswith(TABLE_CONSTRAINTS))
    return tuple(line for line in lines if not line.startswith(TABLE_CONSTRAINTS)), tuple(
        constraints
    )


def rows_of(db: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    cursor = db.execute(f'SELECT * FROM "{table}"')
    columns = [column[0] for column in cursor.description]
    kept = [i for i, column in enumerate(columns) if column not in DEFAULT_EXPERIMENT_OWN]
    rows = cursor.fetchall()
    if table == "experiments":
        rows = [tuple(row[i] for i in kept) for row in rows]
    return sorted(rows, key=repr)


def test_a_store_from_the_template_is_the_one_mlflow_makes(
    tmp_path: Path, cache: Path, alone: dict[str, Any]
) -> None:
    """Compared after MLflow opened both (it adds its Default experiment to
    the template's tables as to its own)."""
    seeded = uri_in(tmp_path / "seeded")
    assert seed_new_store(seeded)
    mlflow.MlflowClient(seeded).search_experiments()
    expected, actual = alone, snapshot(seeded)
    assert actual["schema"] == expected["schema"]
    assert actual["pragmas"] == expected["pragmas"]
    assert actual["mode"] == expected["mode"]  # SQLite's, less the umask
    assert actual["rows"] == expected["rows"]
    assert actual["rows"]["alembic_version"] == [(schema_head(),)]
    assert len(actual["rows"]["experiments"]) == 1  # Default, MLflow's


def recorded_through_mlflow(uri: str, experiment_id: str) -> dict[str, Any]:
    """A run written and read back by MLflow's client alone."""
    client = mlflow.MlflowClient(uri)
    run = client.create_run(experiment_id, tags={"t": "v"}, run_name="r")
    client.log_param(run.info.run_id, "p", "1")
    client.log_metric(run.info.run_id, "m", 0.5, step=2)
    client.set_terminated(run.info.run_id)
    read = mlflow.MlflowClient(uri)
    experiments = [(e.name, e.lifecycle_stage, e.tags) for e in read.search_experiments()]
    (found,) = read.search_runs([experiment_id])
    return {
        "experiments": sorted(experiments),
        "run": (found.info.run_name, found.info.status, found.data.params, found.data.metrics),
        "tags": {k: v for k, v in found.data.tags.items() if not k.startswith("mlflow.")},
        "history": [(m.step, m.value) for m in read.get_metric_history(found.info.run_id, "m")],
    }


def test_mlflow_reads_a_store_from_the_template_as_its_own(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """hydraflow's way (template, WAL, the experiment) against MLflow alone."""
    oracle = mlflow_alone(tmp_path / "alone")
    oracle_id = mlflow.MlflowClient(oracle).create_experiment("e", tags=EXPERIMENT_TAGS)
    ours = uri_in(tmp_path / "ours")
    with caplog.at_level(logging.DEBUG, logger="hydraflow"):
        _, our_id = open_new_experiment(ours, "e", tmp_path / "ours")
    assert "made the store template" in caplog.text  # and used it:
    assert "no store template" not in caplog.text
    assert recorded_through_mlflow(ours, our_id) == recorded_through_mlflow(oracle, oracle_id)


def test_the_template_is_made_once_then_copied(tmp_path: Path, cache: Path) -> None:
    assert seed_new_store(uri_in(tmp_path / "first"))
    (template,) = templates(cache)
    made = template.stat()
    assert seed_new_store(uri_in(tmp_path / "second"))
    assert templates(cache) == [template]
    assert (template.stat().st_ino, template.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert not list((tmp_path / "second").glob(".*"))  # no temporary file left beside


def test_a_relative_store_path_is_seeded_in_the_launch_directory(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`sqlite:///mlflow.db` names a file in the working directory."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with caplog.at_level(logging.DEBUG, logger="hydraflow"):
        open_new_experiment("sqlite:///mlflow.db", "e", tmp_path)
    assert "made the store template" in caplog.text
    assert "no store template" not in caplog.text
    assert (tmp_path / "mlflow.db").exists() and not (tmp_path / "elsewhere" / "mlflow.db").exists()
    assert snapshot(uri_in(tmp_path))["rows"]["alembic_version"] == [(schema_head(),)]


def test_a_seeded_store_reads_as_ready_only_once_opened(tmp_path: Path, cache: Path) -> None:
    """Another process meeting the store between the copy and the switch to
    WAL takes the lock and looks again, as it would mid-creation by MLflow."""
    uri = uri_in(tmp_path / "store")
    assert seed_new_store(uri)
    assert not is_initialised(uri)
    open_new_experiment(uri, "e", tmp_path / "store")
    assert is_initialised(uri)


def test_a_making_killed_midway_is_cleared_by_the_next(tmp_path: Path, cache: Path) -> None:
    folder = cache / "hydraflow" / store_template.FOLDER
    stale, live = folder / ".making-stale", folder / ".making-live"
    for making in (stale, live):
        making.mkdir(parents=True)
        (making / "template.db").write_bytes(b"half")
    os.utime(stale, (0, time.time() - 2 * store_template.STALE_SECONDS))
    assert seed_new_store(uri_in(tmp_path / "store"))
    assert not stale.exists() and live.exists()


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    uri = mlflow_alone(tmp_path / "store")
    before = database(uri).read_bytes()
    assert not seed_new_store(uri)
    assert database(uri).read_bytes() == before


def test_a_store_named_by_a_link_is_made_where_the_link_points(tmp_path: Path, cache: Path) -> None:
    """As MLflow alone makes it: through the link, which stays a link."""
    (tmp_path / "data").mkdir()
    link = tmp_path / "mlflow.db"
    link.symlink_to(tmp_path / "data" / "store.db")
    open_new_experiment(f"sqlite:///{link}", "e", tmp_path)
    assert link.is_symlink()
    assert is_initialised(f"sqlite:///{tmp_path / 'data' / 'store.db'}")


def test_an_empty_file_is_a_new_store_and_keeps_its_mode(tmp_path: Path, cache: Path) -> None:
    uri = uri_in(tmp_path / "store")
    database(uri).touch(mode=0o600)
    assert seed_new_store(uri)
    assert database(uri).stat().st_size > 0
    assert stat.S_IMODE(database(uri).stat().st_mode) == 0o600


@pytest.mark.parametrize("side", ["-wal", "-journal"])
def test_a_store_with_a_journal_beside_is_left_to_mlflow(
    tmp_path: Path, cache: Path, side: str
) -> None:
    """SQLite would replay a stale journal or WAL into any new file there."""
    uri = uri_in(tmp_path / "store")
    Path(f"{database(uri)}{side}").write_bytes(b"")
    assert not seed_new_store(uri)
    assert not database(uri).exists()


def test_other_stores_are_left_to_mlflow(cache: Path) -> None:
    assert not seed_new_store("postgresql://user@host/db")
    assert not templates(cache)


def previous_revision() -> str:
    """The alembic revision before MLflow's head: what an older MLflow made."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))  # type: ignore[no-untyped-call]
    down = script.get_revision(schema_head()).down_revision
    assert isinstance(down, str)
    return down


def truncate(template: Path) -> None:
    template.write_bytes(template.read_bytes()[: 40 * 4096])


def garbage(template: Path) -> None:
    template.write_bytes(b"not a database\n" * 1000)


def older_version(template: Path) -> None:
    with contextlib.closing(sqlite3.connect(template)) as db, db:
        db.execute("UPDATE alembic_version SET version_num = ?", (previous_revision(),))


def missing_table(template: Path) -> None:
    with contextlib.closing(sqlite3.connect(template)) as db, db:
        db.execute("DROP TABLE latest_metrics")


def someones_store(template: Path) -> None:
    shutil.copyfile(database(mlflow_alone(template.parent.parent / "someone")), template)


DAMAGES = [truncate, garbage, older_version, missing_table, someones_store]


@pytest.mark.parametrize("damage", DAMAGES, ids=[damage.__name__ for damage in DAMAGES])
def test_a_damaged_template_leaves_the_store_to_mlflow_and_is_made_again(
    tmp_path: Path,
    cache: Path,
    alone: dict[str, Any],
    damage: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_new_store(uri_in(tmp_path / "first"))
    (template,) = templates(cache)
    damage(template)
    uri = uri_in(tmp_path / "store")
    with caplog.at_level(logging.DEBUG, logger="hydraflow"):
        assert not seed_new_store(uri)
    assert "no store template" in caplog.text
    assert not database(uri).exists()  # nothing half made: MLflow's to create
    assert not template.exists()  # removed: the next new store makes it again
    open_new_experiment(uri, "e", tmp_path / "store")
    assert snapshot(uri)["schema"] == alone["schema"]
    assert seed_new_store(uri_in(tmp_path / "again"))
    assert len(templates(cache)) == 1


def test_an_unusable_cache_folder_leaves_the_store_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache folder's place taken by a file: nothing can be made there."""
    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = uri_in(tmp_path / "store")
    with caplog.at_level(logging.DEBUG, logger="hydraflow"):
        _, experiment = open_new_experiment(uri, "e", tmp_path / "store")
    assert "no store template" in caplog.text
    assert mlflow.MlflowClient(uri).get_experiment(experiment).name == "e"


def test_a_user_without_a_home_has_no_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No XDG_CACHE_HOME and no home (`Path.home()` raises, as for a uid the
    passwd file does not know): MLflow creates the tables."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    uri = uri_in(tmp_path / "store")
    assert not seed_new_store(uri)
    open_new_experiment(uri, "e", tmp_path / "store")
    assert snapshot(uri)["rows"]["alembic_version"] == [(schema_head(),)]


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)])
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("options", ["size=8k", "ro"], ids=["full", "read-only"])
def test_a_full_or_read_only_cache_leaves_the_store_to_mlflow(
    tmp_path: Path, cache: Path, options: str
) -> None:
    with mounted_tmpfs(cache, options):
        uri = uri_in(tmp_path / "store")
        _, experiment = open_new_experiment(uri, "e", tmp_path / "store")
        assert mlflow.MlflowClient(uri).get_experiment(experiment).name == "e"
        assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing half written


OPENER = """
import sys, time
from pathlib import Path
import mlflow
from hydraflow.store import open_new_experiment

folder, start, index = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
while not start.exists():  # all four import first, then open at once
    time.sleep(0.005)
client, experiment = open_new_experiment(f"sqlite:///{folder / 'mlflow.db'}", "e", folder)
run = client.create_run(experiment, tags={"index": index})
client.set_terminated(run.info.run_id)
"""


@pytest.mark.slow
def test_four_processes_opening_new_stores_at_once(tmp_path: Path, cache: Path) -> None:
    """Two new stores, three processes on one and one on the other, the
    template not made yet: the first of each store's makes it (under the
    store's lock), so two make it at once; every run is recorded once, and
    one whole template stays."""
    (tmp_path / "opener.py").write_text(textwrap.dedent(OPENER))
    start = tmp_path / "start"
    folders = [tmp_path / "a", tmp_path / "a", tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    processes = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "opener.py"), str(folder), str(start), str(index)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, folder in enumerate(folders)
    ]
    start.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    for folder, indexes in ((tmp_path / "a", {"0", "1", "2"}), (tmp_path / "b", {"3"})):
        client = mlflow.MlflowClient(uri_in(folder))
        experiment = client.get_experiment_by_name("e")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(run.data.tags["index"] for run in runs) == sorted(indexes)
        assert [e.name for e in client.search_experiments()] == ["e", "Default"]
    assert len(templates(cache)) == 1  # no `.making-` folder left either
    assert seed_new_store(uri_in(tmp_path / "c"))  # and it passes its check


APP = """
from dataclasses import dataclass

import hydraflow


@dataclass
class Config:
    a: int = 0


@hydraflow.main(Config)
def app(run, cfg):
    pass


if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_two_commands_at_once_into_a_new_folder(tmp_path: Path, cache: Path) -> None:
    """`hydraflow run -j 2` with a cold template: each run recorded once."""
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    jobs = "jobs:\n  j:\n    run: python app.py\n    sets:\n      - each: a=1:4\n"
    (tmp_path / "hydraflow.yaml").write_text(jobs)
    done = subprocess.run(
        [HYDRAFLOW, "run", "j", "-j", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=user_environment(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    client = mlflow.MlflowClient(uri_in(tmp_path))
    experiment = client.get_experiment_by_name("j")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.params["a"] for run in runs) == ["1", "2", "3", "4"]
    assert len(templates(cache)) == 1
