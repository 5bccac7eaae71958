"""The metric-history caches (`tracking/histories.py`) under faults: a file
damaged, cut short, of another metric or paired with another's; a folder
hydraflow cannot read or write; a full disk; several processes writing at
once. The values the stopping rule reads must be MLflow's own reading of
the completed runs' histories (`MlflowClient.get_metric_history`, the
oracle) — the cache rebuilt or bypassed, never a wrong value, never an
error in the user's app. Real stores, real files, real processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from hydraflow.tracking import histories

from tests.conftest import HYDRAFLOW

STEPS = (0, 1, 2, 3)


@dataclass(frozen=True)
class Store:
    path: Path
    experiment: str
    current: str

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(f"sqlite:///{self.path}")

    def folder(self, metric: str = "loss") -> Path:
        return histories.cache_folder(self.path, int(self.experiment), metric)

    def new_run(self, values: dict[int, float], metric: str = "loss") -> str:
        client = self.client
        run_id: str = client.create_run(self.experiment).info.run_id
        for step, value in values.items():
            client.log_metric(run_id, metric, value, step=step)
        client.set_terminated(run_id, "FINISHED")
        return run_id


def oracle(store: Store, step: int, metric: str = "loss") -> list[str]:
    """MLflow's reading: each completed run's last value logged at the step
    (as texts: NaN is NaN)."""
    client = store.client
    values = []
    for run in client.search_runs([store.experiment], "attributes.status = 'FINISHED'"):
        if run.info.run_id != store.current and "hydraflow.stopped" not in run.data.tags:
            points = client.get_metric_history(run.info.run_id, metric)
            values += [p.value for p in points if p.step == step][-1:]
    return sorted(map(repr, values))


def sqlite_reader(store: Store) -> histories.Histories:
    return histories.SqliteHistories(store.path, store.experiment, store.current)


def client_reader(store: Store) -> histories.Histories:
    """A tracking server's way (searches and per-run histories through the
    client, the cache in the user's cache folder), on the same store."""
    return histories.ClientHistories(store.client, store.experiment, store.current)


def values(reader: histories.Histories) -> dict[int, list[str]]:
    return {step: sorted(map(repr, reader.at_step("loss", step))) for step in STEPS}


def read(make: Callable[[Store], histories.Histories], store: Store) -> dict[int, list[str]]:
    """The values a new process reads at each step; its files written after."""
    reader = make(store)
    try:
        return values(reader)
    finally:
        reader.close()


def folder_of(make: Callable[[Store], histories.Histories], store: Store) -> Path:
    if make is sqlite_reader:
        return store.folder()
    folder = histories.client_cache_folder(f"sqlite:///{store.path}", store.experiment, "loss")
    assert folder is not None  # the user's cache folder is in tmp (the `store` fixture)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Completed runs of two metrics, and a run in progress, the current one."""
    folder = tmp_path_factory.mktemp("built")
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(folder / "art"))
    store = Store(folder / "mlflow.db", experiment, client.create_run(experiment).info.run_id)
    for index in range(6):
        store.new_run({s: (index + 1) / (s + 1) for s in range(4)})
        store.new_run({s: 100.0 + index + s for s in range(4)}, metric="acc")
    store.new_run({0: float("nan"), 1: 3.0})
    (folder / "store.json").write_text(json.dumps([experiment, store.current]))
    return folder


@pytest.fixture
def store(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A copy of the built store; the user's cache folder in tmp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(built, tmp_path / "store")
    experiment, current = json.loads((tmp_path / "store" / "store.json").read_text())
    return Store(tmp_path / "store" / "mlflow.db", experiment, current)


def cached(make: Callable[[Store], histories.Histories], store: Store) -> list[Path]:
    """Two segments of "loss" in the cache (two processes, a run completed
    between them), one of "acc"; the segments' files."""
    read(make, store)
    store.new_run({0: 0.5, 1: 0.25, 2: 0.125, 3: 0.0625})
    read(make, store)
    reader = make(store)
    reader.at_step("acc", 0)
    reader.close()
    files = sorted(folder_of(make, store).glob("*.npy"), key=lambda f: -f.stat().st_size)
    assert len(files) == 2
    return files  # the larger first


def rewrite(file: Path, change: Callable[[bytes], bytes]) -> None:
    file.write_bytes(change(file.read_bytes()))


def another_metrics_files(file: Path, folder: Path) -> None:
    """The folder's files replaced by those of the other metric ("acc")."""
    (acc,) = (other for other in folder.parent.iterdir() if other != folder)
    for own in folder.glob("*.*"):
        own.unlink()
    for other in acc.glob("*.*"):
        shutil.copy(other, folder / other.name)


def runs_swapped(file: Path, folder: Path) -> None:
    """Each segment's records paired with the other's list of runs."""
    first, second = sorted(folder.glob("*.runs"))
    first_text, second_text = first.read_text(), second.read_text()
    first.write_text(second_text)
    second.write_text(first_text)


def lines_changed(change: Callable[[list[str]], list[str]]) -> Callable[[Path, Path], None]:
    def damage(file: Path, _: Path) -> None:
        runs = file.with_suffix(".runs")
        runs.write_text("\n".join(change(runs.read_text().splitlines())))

    return damage


def last_record(change: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    """The last record (20 bytes: step, run, value) changed."""
    return lambda file, _: rewrite(file, lambda data: data[:-20] + change(data[-20:]))


DAMAGE: dict[str, Callable[[Path, Path], object]] = {
    "cut short": lambda file, _: rewrite(file, lambda data: data[:-7]),
    "cut within its header": lambda file, _: rewrite(file, lambda data: data[:40]),
    "empty": lambda file, _: file.write_bytes(b""),
    "garbage": lambda file, _: rewrite(file, lambda data: os.urandom(len(data))),
    "a value changed": last_record(lambda record: record[:12] + struct.pack("<d", -1e9)),
    "a step changed": last_record(lambda record: struct.pack("<q", 1) + record[8:]),
    "a record more": lambda file, _: np.save(file, np.concatenate([np.load(file)] * 2)[:-1]),
    "bytes after its records": lambda file, _: rewrite(file, lambda data: data + data[-20:]),
    "another array": lambda file, _: np.save(file, np.arange(10.0)),
    "its runs cut": lines_changed(lambda lines: lines[:-1]),
    "a run more": lines_changed(lambda lines: [*lines, "f" * 32]),
    "two runs exchanged": lines_changed(lambda lines: [lines[0], lines[2], lines[1], *lines[3:]]),
    "its runs garbage": lambda file, _: file.with_suffix(".runs").write_bytes(os.urandom(99)),
    "without its runs' header": lines_changed(lambda lines: lines[1:]),
    "paired with another's runs": runs_swapped,
    "another metric's files": another_metrics_files,
}


@pytest.mark.parametrize("make", [sqlite_reader, client_reader], ids=["sqlite", "server"])
@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_file_is_rebuilt_and_the_values_are_mlflows(
    store: Store, make: Callable[[Store], histories.Histories], damage: str
) -> None:
    first, _ = cached(make, store)
    expected = {step: oracle(store, step) for step in STEPS}
    assert read(make, store) == expected
    DAMAGE[damage](first, folder_of(make, store))
    assert read(make, store) == expected  # the damaged file deleted, its runs fetched again
    # Deleted, unless what it holds is whole (bytes after the records are not read).
    assert first.exists() == (damage == "bytes after its records")
    later = make(store)
    assert values(later) == expected
    segments = later.segments["loss"]  # type: ignore[attr-defined]
    assert segments.fetched == [] and segments.stored  # what is left is whole
    later.close()


def test_a_damaged_newest_end_is_not_believed(store: Store) -> None:
    """A tracking server's cache says the newest end its writers saw; a
    damaged one (here: later than it was) would hide the runs that ended
    before it from a later process's first searches."""
    cached(client_reader, store)
    folder = folder_of(client_reader, store)
    newest_end = folder / histories.NEWEST_END
    assert histories.read_newest_end(folder) is not None
    store.new_run({0: -1.0, 1: -1.0, 2: -1.0, 3: -1.0})  # ended after the files were written
    expected = {step: oracle(store, step) for step in STEPS}
    for text in ("9" * 15, "9" * 15 + " 0badcafe", newest_end.read_text() + "9", "x"):
        newest_end.write_text(text)
        assert histories.read_newest_end(folder) is None
        reader = histories.ClientHistories(store.client, store.experiment, store.current)
        assert values(reader) == expected
        assert reader.full_search is None  # it searched every page itself, the first time
        reader.close()


# A process of the user's: the values at each step as the rule reads them, as JSON.
READER = """
import json, sys
from pathlib import Path
from hydraflow.tracking import histories

path, experiment, current = sys.argv[1:4]
reader = histories.SqliteHistories(Path(path), experiment, current)
print(json.dumps({s: sorted(map(repr, reader.at_step("loss", s))) for s in (0, 1, 2, 3)}))
reader.close()
"""


def blocked_ancestor(path: Path) -> Path | None:
    """The topmost folder above `path` that other users may not pass
    through (no o+x), e.g. a clone in a `mktemp -d` folder, or /root."""
    return next((a for a in reversed(path.parents) if not a.stat().st_mode & stat.S_IXOTH), None)


# Run as root in a private mount namespace, before the other user's command:
# each blocked folder covered by a tmpfs of mode 0755 in which only the
# folders the command needs are bound, at their own paths, with their own
# owners and modes. Nothing outside the namespace changes, not even for a
# moment, and the namespace ends with the command.
UNCOVER = """
set -eu
umask 022
stage=$1
mount -t tmpfs -o mode=0755 reachable "$stage"
shift
while [ "$1" != -- ]; do  # each needed folder, at its own path in the stage
    mkdir -p "$stage$1"
    mount --rbind "$1" "$stage$1"
    shift
done
shift
while [ "$1" != -- ]; do  # covered: the staged tree over each blocked folder
    mount --rbind "$stage$1" "$1"
    shift
done
shift
exec "$@"
"""


@contextlib.contextmanager
def as_user(uid: int, *needed: Path) -> Iterator[list[str]]:
    """The command prefix that runs as `uid` (its own group, no other, no
    capabilities), able to reach `needed` (this interpreter, its venv and
    hydraflow are added) even where their folders are closed to other
    users: the clone under a folder of mode 0700, or pyenv under /root.
    (setpriv execs with root's capabilities, so the interpreter starts
    anyway; but its libpython, standard library and packages are then read
    as the user: without this, another Python or none is found.)"""
    import hydraflow

    user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    interpreter = [Path(sys.prefix), Path(sys.base_prefix), Path(hydraflow.__file__).parent.parent]
    paths = {path.resolve() for path in [*interpreter, *needed]}
    paths = {path for path in paths if not any(o in path.parents for o in paths)}
    covered = {path: blocked for path in paths if (blocked := blocked_ancestor(path))}
    if not covered:
        yield user
        return
    stage = Path(tempfile.mkdtemp(prefix="reachable-"))  # a mount point only in the namespace
    try:
        staged = [str(path) for path in sorted(covered)]
        tops = [str(top) for top in sorted(set(covered.values()))]
        namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", UNCOVER, "sh"]
        yield [*namespace, str(stage), *staged, "--", *tops, "--", *user]
    finally:
        stage.rmdir()


def read_elsewhere(store: Store, *prefix: str) -> dict[int, list[str]]:
    argv = [*prefix, sys.executable, "-c", READER, str(store.path), store.experiment, store.current]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return {int(step): texts for step, texts in json.loads(done.stdout).items()}


@contextlib.contextmanager
def public_copy(store: Store) -> Iterator[Store]:
    """The store in a folder anyone can read (pytest's own is its user's only)."""
    folder = Path(tempfile.mkdtemp(prefix="histories-"))
    try:
        folder.chmod(0o755)
        shutil.copy(store.path, folder / store.path.name)
        (folder / store.path.name).chmod(0o644)
        yield Store(folder / store.path.name, store.experiment, store.current)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("what", "mode"),
    [("the folder", 0o700), ("the folder, listing", 0o711), ("the files", 0o600)],
)
def test_a_cache_another_user_made_is_bypassed(store: Store, what: str, mode: int) -> None:
    """Written by one user (here root), read by another who may not read it,
    nor write beside it: the values are read from the store, nothing fails."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to be another user")
    with public_copy(store) as public, as_user(65534, public.path.parent) as other_user:
        expected = {step: oracle(public, step) for step in STEPS}
        assert read_elsewhere(public) == expected  # the cache written, by root
        cache = public.path.parent / ".hydraflow"
        targets = [p for p in cache.rglob("*") if p.is_file()] if what == "the files" else [cache]
        for target in targets:
            target.chmod(mode)
        files = sorted(cache.rglob("*"))
        assert read_elsewhere(public, *other_user) == expected
        assert sorted(cache.rglob("*")) == files  # left as it was: nothing deleted, nothing added
        assert read_elsewhere(public) == expected  # and still good for its own user


@pytest.mark.parametrize("blocked", ["a file", "a symlink loop"])
def test_a_cache_folder_that_cannot_be_one_is_bypassed(store: Store, blocked: str) -> None:
    cache = store.path.parent / ".hydraflow"
    shutil.rmtree(cache, ignore_errors=True)  # the built store was never read this way
    if blocked == "a file":
        cache.write_text("not a folder")
    else:
        cache.symlink_to(cache.name)
    expected = {step: oracle(store, step) for step in STEPS}
    assert read(sqlite_reader, store) == expected
    assert read(sqlite_reader, store) == expected


# A process of the user's reading as from a tracking server (the cache in
# the user's cache folder): the values, and whether it had a cache folder.
CLIENT_READER = """
import json, os, sys
import mlflow
from hydraflow.tracking import histories

# MLflow 3.17 reads `Path.home()` when imported: the home goes after.
del os.environ["HOME"]

path, experiment, current = sys.argv[1:4]
client = mlflow.MlflowClient(f"sqlite:///{path}")
reader = histories.ClientHistories(client, experiment, current)
values = {s: sorted(map(repr, reader.at_step("loss", s))) for s in (0, 1, 2, 3)}
reader.close()
print(json.dumps({"values": values, "cached": reader.segments["loss"].folder is not None}))
"""


def unknown_uid() -> int:
    """A user id the passwd file does not list (a container's arbitrary user)."""
    import pwd

    known = {entry.pw_uid for entry in pwd.getpwall()}
    return next(uid for uid in range(54321, 65534) if uid not in known)


def test_a_user_without_a_home_reads_without_a_cache(store: Store) -> None:
    """No XDG_CACHE_HOME, no HOME, and a uid the passwd file does not know:
    `Path.home()` raises RuntimeError. The values are read from the server
    each time (no cache), and the user's app never fails for it. (MLflow
    cannot be imported without a home: the reader's HOME goes after.)"""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to be a user the passwd file does not know")
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    with public_copy(store) as public, as_user(unknown_uid(), public.path.parent) as homeless:
        env["HOME"] = str(public.path.parent)  # not writable by that user
        expected = {str(step): oracle(public, step) for step in STEPS}
        argv = [*homeless, sys.executable, "-c", CLIENT_READER, str(public.path)]
        argv += [public.experiment, public.current]
        files = sorted(public.path.parent.rglob("*"))
        for _ in range(2):  # the second as the first: nothing was kept
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=120, env=env, cwd=public.path.parent
            )
            assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
            assert json.loads(done.stdout) == {"values": expected, "cached": False}
        assert sorted(public.path.parent.rglob("*")) == files


@pytest.mark.parametrize("make", [sqlite_reader, client_reader], ids=["sqlite", "server"])
def test_a_full_disk_leaves_no_partial_file(
    store: Store, make: Callable[[Store], histories.Histories]
) -> None:
    """The cache's folder on a filesystem with room for one small file (a
    tmpfs of one page): the values are right, and a failed write leaves
    nothing behind but that small file (a server's `newest-end`); with room
    again, the files are written."""
    sqlite = make is sqlite_reader
    cache = store.path.parent / ".hydraflow" if sqlite else Path(os.environ["XDG_CACHE_HOME"])
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(cache)])
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    expected = {step: oracle(store, step) for step in STEPS}
    try:
        for _ in range(2):
            assert read(make, store) == expected
            left = [p.name for p in cache.rglob("*") if p.is_file()]
            assert left == ([] if sqlite else [histories.NEWEST_END])
    finally:
        subprocess.run(["umount", str(cache)], check=True)
    assert read(make, store) == expected
    assert len(list(folder_of(make, store).glob("*.npy"))) == 1


# Several processes at once, each reading (REFRESH_SECONDS 0: the runs
# completed meanwhile too) and writing the cache (MAX_SEGMENTS 1: merging
# it, deleting files the others may be reading) again and again; each
# compares every value with MLflow's reading of the runs it counted.
WORKER = """
import json, sys
from pathlib import Path
import mlflow
from hydraflow.tracking import histories

path, experiment, current, rounds = sys.argv[1:5]
histories.SqliteHistories.REFRESH_SECONDS = 0.0
histories.MAX_SEGMENTS = 1
client = mlflow.MlflowClient(f"sqlite:///{path}")
points = {}
wrong = []
for _ in range(int(rounds)):
    reader = histories.SqliteHistories(Path(path), experiment, current)
    for step in (0, 1, 2, 3):
        got = sorted(map(repr, reader.at_step("loss", step)))
        for run in reader.completed - points.keys():
            points[run] = client.get_metric_history(run, "loss")
        expected = []
        for run in reader.completed:
            expected += [p.value for p in points[run] if p.step == step][-1:]
        if got != sorted(map(repr, expected)):
            wrong.append((step, got, sorted(map(repr, expected))))
    reader.close()
print(json.dumps(wrong))
"""


@pytest.mark.slow
def test_processes_reading_and_writing_at_once_read_mlflows_values(store: Store) -> None:
    argv = [sys.executable, "-c", WORKER, str(store.path), store.experiment, store.current, "15"]
    workers = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    stop = threading.Event()

    def complete_runs() -> None:  # runs completed all along
        index = 0
        while not stop.wait(0.2):
            index += 1
            store.new_run({s: index / (s + 2) for s in range(4)})

    adding = threading.Thread(target=complete_runs)
    adding.start()
    try:
        ended = [worker.communicate(timeout=240) for worker in workers]
    finally:
        stop.set()
        adding.join()
        for worker in workers:
            worker.kill()
            worker.wait()
    for (out, err), worker in zip(ended, workers, strict=True):
        assert worker.returncode == 0, err
        assert json.loads(out) == []
    expected = {step: oracle(store, step) for step in STEPS}
    assert read(sqlite_reader, store) == expected
    folder = store.folder()
    assert not list(folder.glob(".*.partial"))
    assert all(histories.read_segment(file) is not None for file in folder.glob("*.npy"))


APPS = Path(__file__).parent / "apps" / "search"
JOBS = """
jobs:
  first:
    run: {python} stopping_app.py
    name: grid
    sets:
      - all: rate=2,3,1,4,5
  second:
    run: {python} stopping_app.py
    name: grid
    sets:
      - all: rate=1.5,2.5,3.5,4.5
"""


def hydraflow_run(folder: Path, job: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [HYDRAFLOW, "run", job], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1].rsplit(";", 1)[0]


def stopped_rates(folder: Path) -> list[tuple[str, str | None]]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        return sorted(
            db.execute(
                "SELECT p.value, t.value FROM runs r JOIN params p ON p.run_uuid = r.run_uuid "
                "AND p.key = 'rate' LEFT JOIN tags t ON t.run_uuid = r.run_uuid "
                "AND t.key = 'hydraflow.stopped'"
            ).fetchall()
        )


@pytest.mark.slow
def test_early_stopping_decides_with_a_damaged_cache_as_without_one(tmp_path: Path) -> None:
    """The oracle: the same job beside the same runs with no cache (read
    from the store, as tests/test_search.py checks against MLflow's reading).
    Damaged: every value in the files made implausible (-1e9), the files
    otherwise well formed; believed, every later run would stop."""
    damaged, fresh = tmp_path / "damaged", tmp_path / "fresh"
    damaged.mkdir()
    shutil.copy(APPS / "stopping_app.py", damaged)
    (damaged / "hydraflow.yaml").write_text(textwrap.dedent(JOBS).format(python=sys.executable))
    assert (
        hydraflow_run(damaged, "first")
        == "hydraflow: first: 1 command: 1 finished; 5 runs: 3 finished, 2 stopped"
    )
    shutil.copytree(damaged, fresh)
    shutil.rmtree(fresh / ".hydraflow" / "histories")
    files = list((damaged / ".hydraflow" / "histories").rglob("*.npy"))
    assert files
    for file in files:
        records = np.load(file)
        records["value"] = -1e9
        np.save(file, records)
    assert hydraflow_run(damaged, "second") == hydraflow_run(fresh, "second")
    assert stopped_rates(damaged) == stopped_rates(fresh)
    assert ("1.5", None) in stopped_rates(fresh) and ("4.5", "1") in stopped_rates(fresh)
