"""The MLflow tracking store: which one, and safe use by parallel writers.

Several processes (Hydra's joblib launcher, `hydraflow run -j`) may share one
SQLite file. Creating the database and an experiment happen under a file lock
beside the store, the database is switched to WAL journaling so readers do not
block writers, and calls that still meet a busy database are retried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from filelock import FileLock

from hydraflow.errors import StoreError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

DEFAULT_DB = "mlflow.db"
BUSY_MARKERS = ("database is locked", "database is busy", "database table is locked")
RETRIES = 12
# MLflow's UI opens an experiment of this kind on its runs table.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(explicit: str | os.PathLike[str] | None, launch_dir: Path) -> str:
    """`explicit`, else MLFLOW_TRACKING_URI, else SQLite `mlflow.db` in the launch dir."""
    if explicit:
        return as_uri(explicit)
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return sqlite_uri((launch_dir / DEFAULT_DB).resolve())


# `scheme:` at the start (two letters at least: `C:` is a Windows drive).
URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
# Tracking URIs MLflow takes without a scheme.
BARE_URIS = ("databricks", "databricks-uc")


def as_uri(store: str | os.PathLike[str]) -> str:
    """A tracking URI as is; a path (a `Path`, or a string without a scheme)
    names a SQLite file, made absolute (MLflow would read a plain path as its
    retired file store)."""
    text = os.fspath(store)
    if isinstance(store, str) and (URI_SCHEME.match(text) or text in BARE_URIS):
        return text
    return sqlite_uri(Path(text).absolute())


def sqlite_uri(path: Path) -> str:
    """The URI of a SQLite file. SQLAlchemy decodes `%XX` in the path and
    ends it at `?`, so those two are encoded: a folder named `a%20b` is not
    `a b`."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def sqlite_path(uri: str) -> Path | None:
    """The file a SQLite URI names, as SQLAlchemy (and so MLflow) opens it."""
    from urllib.parse import unquote

    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return Path(unquote(uri[len(prefix) :].split("?", 1)[0]))
    return None


def user_cache_folder() -> Path | None:
    """hydraflow's folder in the user's cache: `$XDG_CACHE_HOME/hydraflow`,
    else `~/.cache/hydraflow`. None when the user has none: no XDG_CACHE_HOME,
    no HOME and no home in the passwd file (a container's arbitrary uid),
    where `Path.home()` raises RuntimeError."""
    cache_home = os.environ.get("XDG_CACHE_HOME")
    try:
        root = Path(cache_home) if cache_home else Path.home() / ".cache"
    except RuntimeError:
        return None
    return root / "hydraflow"


def lock_for(uri: str, launch_dir: Path) -> FileLock:
    """A lock file beside a SQLite store, else in the launch directory."""
    path = sqlite_path(uri)
    lock_path = path.with_name(path.name + ".lock") if path else launch_dir / ".hydraflow.lock"
    return FileLock(str(lock_path), timeout=120)


def is_busy(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in BUSY_MARKERS)


def retry_busy(call: Callable[[], T]) -> T:
    """Runs `call`, retrying with jittered exponential backoff while SQLite is busy."""
    for attempt in range(RETRIES):
        try:
            return call()
        except Exception as error:
            if not is_busy(error) or attempt == RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def use_wal(uri: str) -> None:
    path = sqlite_path(uri)
    if path and path.exists():
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")


def is_initialised(uri: str) -> bool:
    """Whether hydraflow finished setting up this SQLite store: it switches the
    store to WAL (header bytes 18-19 become 2) only after MLflow created the
    tables, so a store mid-creation by another process never reads as ready."""
    path = sqlite_path(uri)
    if path is None or not path.exists():
        return False
    header = database_header(path)
    return len(header) == 20 and header[18:20] == b"\x02\x02"


# Descriptors of store files this process read a header through, kept open
# for the rest of the process: closing any descriptor of a file drops every
# POSIX lock the process holds on it, its SQLite connections' included, and
# another process could then take the log from under them ("disk I/O
# error", or worse). The core's page reader keeps its own likewise
# (rust/store/files.rs). One per file: (pid, fd) by (dev, ino).
_kept: dict[tuple[int, int], tuple[int, int]] = {}


def database_header(path: Path) -> bytes:
    """The database file's first 20 bytes, through the descriptor this
    process keeps on it (opened on the first read, never closed)."""
    identity = file_identity(path)
    kept = _kept.get(identity)
    if kept is None or kept[0] != os.getpid():  # none yet, or a parent's before a fork
        kept = (os.getpid(), os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        _kept[identity] = kept
    return os.pread(kept[1], 20, 0)


def forget_kept() -> None:
    """Closes the descriptors kept (tests, between tests: no lock to keep)."""
    for pid, fd in _kept.values():
        if pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)
    _kept.clear()


# One client and experiment id per (store, experiment) for the whole process:
# the jobs of one multirun share them instead of reconnecting each time.
_opened: dict[tuple[str, str], tuple[MlflowClient, str]] = {}


def open_experiment(uri: str, name: str, launch_dir: Path) -> tuple[MlflowClient, str]:
    """`open_new_experiment`, remembered for the rest of the process."""
    from hydraflow.remote import APP_SECONDS, check_reachable

    key = (uri, name)
    if key not in _opened:
        try:
            check_reachable(uri, APP_SECONDS)
            _opened[key] = opened_ahead(uri, name) or open_new_experiment(uri, name, launch_dir)
        except Exception as error:
            raise StoreError(uri, error) from error
        warning = network_store_warning(uri)
        if warning is not None:
            logging.getLogger("hydraflow").warning("%s", warning)
    use_in_mlflow(uri)
    return _opened[key]


def use_in_mlflow(uri: str) -> None:
    """MLflow's store for this process, as `mlflow.set_tracking_uri` sets it,
    without its export to MLFLOW_TRACKING_URI: that variable stays the
    user's choice, which `tracking_uri` reads (a second call of the app from
    another folder) and the processes the app starts inherit."""
    import mlflow

    users = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if users is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users


# Opened by the warm server before it forks commands (`open_ahead`): the
# store's file as it was then, and the experiments found active in it.
_files_ahead: dict[str, tuple[int, int]] = {}
_experiments_ahead: dict[tuple[str, str], tuple[MlflowClient, str]] = {}


def open_ahead(uri: str, name: str, launch_dir: Path) -> None:
    """Opens an existing SQLite store and its experiment `name` for the
    processes forked later, as `open_new_experiment` would, writing nothing:
    a store not yet initialised, or without the experiment active, is left
    to them. MLflow keeps the store for the process (it caches a store per
    URI), with its connections closed: a SQLite connection must not cross a fork."""
    path = sqlite_path(uri)
    if path is None or (uri, name) in _experiments_ahead or not is_initialised(uri):
        return
    import mlflow

    with contextlib.chdir(launch_dir):  # where MLflow resolves its default artifact root
        client = mlflow.MlflowClient(uri)
    _files_ahead[uri] = file_identity(path)
    try:
        experiment = client.get_experiment_by_name(name)
    finally:
        client._tracking_client.store.engine.dispose()
    if experiment is not None and experiment.lifecycle_stage == "active":
        _experiments_ahead[(uri, name)] = (client, experiment.experiment_id)


def opened_ahead(uri: str, name: str) -> tuple[MlflowClient, str] | None:
    """The client and experiment id `open_ahead` found, checked again (the
    experiment restored if it was deleted since); None if there is none, or
    the store's file was replaced meanwhile (MLflow's store for it is then
    dropped, so it is opened, or made, afresh)."""
    identity = _files_ahead.pop(uri, None)
    path = sqlite_path(uri)
    if identity is None or path is None:
        return None
    if not path.exists() or file_identity(path) != identity:
        forget_cached_stores()
        _experiments_ahead.clear()
        return None
    opened = _experiments_ahead.pop((uri, name), None)
    if opened is None:
        return None
    client, _ = opened
    found = existing_experiment(client, name)
    return None if found is None else (client, found)


def forget_opened() -> None:
    """Forgets every client this process opened or inherited (tests reset it)."""
    _opened.clear()
    _files_ahead.clear()
    _experiments_ahead.clear()


def file_identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def forget_cached_stores() -> None:
    """Empties MLflow's cache of one store per URI."""
    from mlflow.tracking._tracking_service import utils

    utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()


def open_new_experiment(uri: str, name: str, launch_dir: Path) -> tuple[MlflowClient, str]:
    """The client for `uri` and the id of experiment `name`, created if missing.

    Creation (of the database or the experiment) happens under a file lock and
    in the launch directory, so that MLflow's default artifact root
    (`./mlruns`) lands there even when Hydra changed the working directory.
    """
    import mlflow

    from hydraflow.store_template import seed_new_store

    use_in_mlflow(uri)
    with contextlib.chdir(launch_dir):
        if is_initialised(uri):
            client = mlflow.MlflowClient(uri)
            found = existing_experiment(client, name)
            if found is not None:
                return client, found
        with lock_for(uri, launch_dir), quiet_table_creation():
            seed_new_store(uri)
            client = mlflow.MlflowClient(uri)
            found = existing_experiment(client, name)
            use_wal(uri)
            if found is not None:
                return client, found
            return client, create_experiment(client, name)


# MLflow says at INFO that it creates (or upgrades) a new store's tables, and
# alembic names each migration: noise in the app's output, not news.
TABLE_CREATION_LOGGERS = ("mlflow.store.db.utils", "alembic")


@contextlib.contextmanager
def quiet_table_creation() -> Iterator[None]:
    """Those loggers at WARNING while a store is opened: their warnings and
    errors still show, their INFO lines do not."""
    loggers = [logging.getLogger(name) for name in TABLE_CREATION_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def create_experiment(client: MlflowClient, name: str) -> str:
    """Creates experiment `name`. Another machine may create it at the same
    moment (the file lock covers one launch directory only): then its id."""
    try:
        return retry_busy(lambda: client.create_experiment(name, tags=EXPERIMENT_TAGS))
    except Exception:
        found = existing_experiment(client, name)
        if found is None:
            raise
        return found


def existing_experiment(client: MlflowClient, name: str) -> str | None:
    """The id of experiment `name` (restored if it was deleted), or None."""
    experiment = retry_busy(lambda: client.get_experiment_by_name(name))
    if experiment is None:
        return None
    if experiment.lifecycle_stage == "deleted":
        retry_busy(lambda: client.restore_experiment(experiment.experiment_id))
    experiment_id: str = experiment.experiment_id
    return experiment_id


# Seconds a reader waits for a writer's lock before SQLite gives up
# ("database is locked"); after WAIT_NOTICE seconds it says who it waits for.
READ_TIMEOUT = 30.0
WAIT_NOTICE = 2.0


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a SQLite store: readers never take a write
    lock, so they neither block nor disturb the runs being written (but a
    hot journal is rolled back first, as any SQLite reader with write access
    would: `roll_back_hot_journal`)."""
    roll_back_hot_journal(path)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=READ_TIMEOUT)


def roll_back_hot_journal(path: Path) -> None:
    """A writer killed mid-transaction in rollback-journal mode (the mode of
    stores MLflow makes) leaves a hot journal beside the store: SQLite's
    readers roll it back before they read, restoring the last commit, but a
    read-only connection cannot and fails ("attempt to write a readonly
    database"). One read through a read-write connection rolls it back, as
    MLflow's own reading does; with no journal there, or one a live writer
    holds, it changes nothing. Without write access SQLite says
    SQLITE_READONLY_ROLLBACK, which `StoreError` explains."""
    try:
        if Path(f"{path.resolve()}-journal").stat().st_size == 0:
            return  # an empty journal (journal_mode=truncate) is never hot
    except FileNotFoundError:
        return
    if on_network_file_system(path):
        return  # a live writer's lock on another machine may not be seen: never roll it back
    uri = f"{path.resolve().as_uri()}?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT)) as connection:
        connection.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()


LOCKS = Path("/proc/locks")
# SQLite's lock bytes in a database file: a reader takes a read lock on one
# byte of the SHARED range, which a writer's PENDING or EXCLUSIVE lock (a
# write lock on those bytes) refuses; its RESERVED lock blocks no reader.
PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
LAST_SHARED_BYTE = PENDING_BYTE + 2 + 510 - 1


def readers_blocked_by(path: Path, locks: Path = LOCKS) -> list[str]:
    """The other processes whose locks on the SQLite file at `path` keep
    readers out (a writer committing, or one in locking_mode=EXCLUSIVE),
    as `PID (NAME)`, from the kernel's table of locks (Linux; else none)."""
    try:
        stat = path.stat()
        table = locks.read_text()
    except OSError:
        return []
    file = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    pids = set()
    for line in table.splitlines():
        # `1: POSIX  ADVISORY  WRITE 2688 fe:00:10076181 1073741824 1073742335`
        # (a lock waited for is listed as `1: -> POSIX ...`: not held).
        fields = line.split()
        if len(fields) != 8 or fields[3] != "WRITE" or fields[5] != file:
            continue
        pid, start, end = fields[4], fields[6], fields[7]
        if not (pid.isdigit() and start.isdigit() and end.isdigit()) or int(pid) == os.getpid():
            continue
        first, last = int(start), int(end)
        only_reserved = first == last == RESERVED_BYTE
        if first <= LAST_SHARED_BYTE and last >= PENDING_BYTE and not only_reserved:
            pids.add(int(pid))
    return [f"{pid} ({process_name(pid)})" for pid in sorted(pids)]


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


def locked_hint(path: Path) -> str:
    """Who holds the store locked and what to do, when the kernel names a
    holder; nothing otherwise (most often a sweep's own jobs meeting, which
    nobody should be told to stop)."""
    holders = readers_blocked_by(path)
    if not holders:
        return ""
    return (
        f" (process {', '.join(holders)} holds it locked: a writer in a long transaction,"
        " or one that keeps the store to itself (locking_mode=EXCLUSIVE) until it closes"
        " it; try again once it is done, or stop it)"
    )


@contextlib.contextmanager
def notice_when_waiting(path: Path) -> Iterator[None]:
    """While the block runs: after WAIT_NOTICE seconds, once, a warning
    naming the processes that keep readers out of `path`, if any, so that a
    wait of up to READ_TIMEOUT seconds is not silent."""

    def notice() -> None:
        holders = readers_blocked_by(path)
        if holders:
            logging.getLogger("hydraflow").warning(
                "hydraflow: waiting up to %.0f s for %s, which holds %s locked",
                READ_TIMEOUT,
                ", ".join(f"process {h}" for h in holders),
                path,
            )

    timer = threading.Timer(WAIT_NOTICE, notice)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# File systems that several machines mount at once: SQLite's locking (and its
# WAL mode, which needs shared memory on one host) cannot keep a database on
# them consistent when writers run on more than one machine.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "9p",
        "afs",
        "beegfs",
        "ceph",
        "cifs",
        "fuse.ceph",
        "fuse.glusterfs",
        "fuse.sshfs",
        "glusterfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "panfs",
        "pvfs2",
        "smb3",
        "smbfs",
        "wekafs",
    }
)
MOUNTS = Path("/proc/mounts")
CLUSTER_DOCS = "README.md, section 'Running on a cluster'"


def network_store_warning(uri: str, mounts: Path = MOUNTS) -> str | None:
    """A one-line warning when `uri` is a SQLite store on a network file
    system (NFS, Lustre, GPFS, CIFS...), found from the mount table; else None."""
    path = sqlite_path(uri)
    if path is None:
        return None
    try:
        table = mounts.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    file_system = mount_type(path.resolve(), table)
    if file_system not in NETWORK_FILE_SYSTEMS:
        return None
    return (
        f"the SQLite store {path} is on {file_system}, a network file system: runs written "
        f"from several machines can block or corrupt it; use an MLflow tracking server "
        f"(see {CLUSTER_DOCS})"
    )


def on_network_file_system(path: Path) -> bool:
    try:
        table = MOUNTS.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return mount_type(path.resolve(), table) in NETWORK_FILE_SYSTEMS


def mount_type(path: Path, table: str) -> str | None:
    """The type of the file system holding `path`: the deepest mount point above it."""
    deepest, found = -1, None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(unescape_mount(fields[1]))
        depth = len(point.parts)
        # At equal depth a later line wins: it is mounted over the earlier one.
        if depth >= deepest and path.is_relative_to(point):
            deepest, found = depth, fields[2]
    return found


def unescape_mount(field: str) -> str:
    """/proc/mounts writes a space in a path as \\040 (octal), and so on."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)
