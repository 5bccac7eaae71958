"""A new SQLite store's tables, copied from a template MLflow made once.

MLflow creates a new store's tables by running its ~60 alembic migrations
(~0.6 s), on the way to every first run in a new folder. The result is the
same empty database each time for one MLflow, alembic head, SQLAlchemy,
alembic and SQLite, so hydraflow keeps one in the user's cache folder, made
by MLflow's own `_initialize_tables`, and copies it into a new store; MLflow
then finds its tables and adds its Default experiment, as it always does.
Whatever goes wrong with the template (missing cache folder, read-only, full,
a damaged or foreign file) leaves the store to MLflow, as without one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import secrets
import shutil
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

from hydraflow.store import sqlite_path, sqlite_uri, user_cache_folder

log = logging.getLogger("hydraflow")

# Part of every template's key: a new layout makes new files.
FORMAT = "hydraflow-store-template-1"
FOLDER = "store-templates"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_FILE_MODE = 0o644
TABLE_NAMES = "SELECT name FROM sqlite_master WHERE type = 'table'"
MAKING = ".making-"
# A making takes a second or so: a folder of one this old was left by a
# process killed midway.
STALE_SECONDS = 3600
# Files beside a database that SQLite would replay into it (a stale journal
# or WAL of a deleted store): then the store is not new, MLflow opens it.
SIDE_FILES = ("-journal", "-wal")


def seed_new_store(uri: str) -> bool:
    """Gives a new SQLite store (missing or empty) MLflow's empty tables from
    the template; call under the store's lock. False when `uri` is no new
    SQLite store or the template cannot serve: MLflow creates the tables."""
    path = sqlite_path(uri)
    # A link is left to MLflow: the copy's rename would replace the link
    # itself, not make the store where it points.
    if path is None or path.is_symlink() or not is_new(path):
        return False
    try:
        template = ready_template()
        if template is not None:
            copy_checked(template, path)
            return True
    except Exception as error:  # a cache: any failure leaves the store to MLflow
        log.debug(
            "hydraflow: no store template for %s (%s): MLflow creates its tables", path, error
        )
    return False


def is_new(path: Path) -> bool:
    if any(path.with_name(path.name + side).exists() for side in SIDE_FILES):
        return False
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def ready_template() -> Path | None:
    """This MLflow's template in the user's cache, made if missing; None
    without a cache folder."""
    root = user_cache_folder()
    if root is None:
        return None
    template = root / FOLDER / template_name()
    if not template.exists():
        make_template(template)
    return template


def template_name() -> str:
    """Named by everything that decides the template's bytes: MLflow's
    version and alembic head, SQLAlchemy's and alembic's versions (they write
    the tables' SQL) and the SQLite library's (it writes the file)."""
    import alembic
    import mlflow
    import sqlalchemy

    head = schema_head()
    versions = (mlflow.__version__, head, sqlalchemy.__version__, alembic.__version__)
    key = "\0".join((FORMAT, *versions, sqlite3.sqlite_version))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"mlflow-{mlflow.__version__}-{head}-{digest}.db"


@functools.cache
def schema_head() -> str:
    """MLflow's alembic head revision (read from its migration scripts)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    head: str = _get_latest_schema_revision()  # type: ignore[no-untyped-call]
    return head


def make_template(template: Path) -> None:
    """MLflow's own table creation in a private folder beside `template`,
    checked once in full, then renamed into place: processes making it at
    once each rename a whole file, and the last one stays."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    template.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_makings(template.parent)
    with tempfile.TemporaryDirectory(dir=template.parent, prefix=MAKING) as folder:
        made = Path(folder) / template.name
        engine = create_sqlalchemy_engine(sqlite_uri(made))  # type: ignore[no-untyped-call]
        try:
            _initialize_tables(engine)  # type: ignore[no-untyped-call]
        finally:
            engine.dispose()
        with contextlib.closing(sqlite3.connect(made)) as connection:
            result = connection.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise ValueError(f"MLflow's new tables fail SQLite's integrity check: {result}")
        os.replace(made, template)
    log.debug("hydraflow: made the store template %s", template)


def remove_stale_makings(folder: Path) -> None:
    """The private folders of makings killed midway (a live one is younger)."""
    for making in folder.glob(f"{MAKING}*"):
        with contextlib.suppress(OSError):
            if time.time() - making.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(making)


class DamagedTemplate(ValueError):
    """A template that fails its check before use."""


def copy_checked(template: Path, path: Path) -> None:
    """`copy_into`; a damaged template is removed (the next new store makes it
    again) and this store left to MLflow."""
    try:
        copy_into(template, path)
    except DamagedTemplate:
        template.unlink(missing_ok=True)
        raise


def copy_into(template: Path, path: Path) -> None:
    """The template's bytes into a temporary file beside `path`, checked
    there, synced, then renamed to `path`: a store is never seen half made."""
    content = template.read_bytes()
    check_file(content)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    # The mode SQLite gives a file it creates (less the umask), or that of
    # the empty file it replaces.
    created = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    try:
        with os.fdopen(created, "wb") as file:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(file.fileno(), stat.S_IMODE(path.stat().st_mode))
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        check_tables(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def check_file(content: bytes) -> None:
    """A whole SQLite file: its header, and as many bytes as it says it has
    (a garbage file or one cut short fails)."""
    if not content.startswith(SQLITE_MAGIC) or len(content) < 100:
        raise DamagedTemplate("the template is no SQLite file")
    page_size = int.from_bytes(content[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(content[28:32], "big")
    if len(content) != page_size * pages:
        raise DamagedTemplate(
            f"the template has {len(content)} bytes, its header says {page_size * pages}"
        )


def check_tables(database: Path) -> None:
    """What MLflow checks before it creates tables itself: at the alembic
    head, every table of its models there; and no experiment yet (a template
    is empty)."""
    # MLflow's models' tables (its utils import every model for its own check).
    import mlflow.store.db.utils  # noqa: F401
    from mlflow.store.db.base_sql_model import Base

    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True)
        ) as db:
            revisions = db.execute("SELECT version_num FROM alembic_version").fetchall()
            tables = {name for (name,) in db.execute(TABLE_NAMES)}
            experiments = db.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise DamagedTemplate(f"the template cannot be read: {error}") from error
    if revisions != [(schema_head(),)]:
        raise DamagedTemplate(
            f"the template's schema is at {revisions}, MLflow's head is {schema_head()}"
        )
    missing = set(Base.metadata.tables) - tables
    if missing:
        raise DamagedTemplate(f"the template lacks the tables {sorted(missing)}")
    if experiments:
        raise DamagedTemplate("the template holds experiments")
