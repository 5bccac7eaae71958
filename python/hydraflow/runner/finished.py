"""Commands proven finished, which `hydraflow run` skips without starting.

Starting a Hydra app costs a second or more before it can tell that its runs
finished. So after a command succeeds, the CLI records its runs and the
app's inputs manifest (see `hydraflow.protocol`); the next time the
same command line comes up it is skipped when every input file still has
its hash, the package versions are the same, and every recorded run is still
FINISHED in the SQLite store. Anything else, and the app is started and
decides for itself. Only the standard library is used, so the check is fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydraflow import protocol
from hydraflow.mlflow_schema import all_finished_in_sqlite
from hydraflow.runner.plan import SWEEP_DIR_KEY, Command
from hydraflow.store import sqlite_path

RECORD_DIR = ".hydraflow"
RECORD_DB = "finished.db"
SCHEMA = "CREATE TABLE IF NOT EXISTS commands (key TEXT PRIMARY KEY, manifest TEXT, runs TEXT)"


def command_key(argv: Sequence[str]) -> str:
    """The command line without its sweep directory, which is new every time."""
    kept = [arg for arg in argv if not arg.startswith(f"{SWEEP_DIR_KEY}=")]
    return hashlib.sha256("\0".join(kept).encode()).hexdigest()


class FinishedCommands:
    """The record of finished commands kept in `.hydraflow/` of the launch directory."""

    def __init__(self, launch_dir: Path) -> None:
        self.path = launch_dir / RECORD_DIR / RECORD_DB

    def is_finished(self, argv: Sequence[str]) -> bool:
        record = self.read(command_key(argv))
        if record is None:
            return False
        manifest, run_ids = record
        return protocol.inputs_unchanged(manifest) and all_finished(
            protocol.manifest_store(manifest), run_ids
        )

    def record(
        self, argv: Sequence[str], manifest_file: Path, events: Iterable[dict[str, Any]], runs: int
    ) -> bool:
        """Records a command that exited 0, if its events account for every
        one of its `runs` as finished, resumed or skipped (none of them made
        by code that has changed since). Returns whether it did."""
        ends = [event for event in events if event.get("event") == protocol.END]
        if len(ends) != runs or any(
            event.get("outcome") not in protocol.DONE_OUTCOMES for event in ends
        ):
            return False
        if any(protocol.CODE_CHANGED in event for event in ends):
            return False  # runs made by other code: say so each time, never skip in silence
        try:
            manifest = json.loads(manifest_file.read_text())
        except (OSError, ValueError):
            return False
        if (
            not protocol.is_provable(manifest)
            or sqlite_file(protocol.manifest_store(manifest)) is None
        ):
            return False
        run_ids = sorted({str(event.get("run_id")) for event in ends})
        self.write(command_key(argv), json.dumps(manifest), json.dumps(run_ids))
        return True

    def read(self, key: str) -> tuple[dict[str, Any], list[str]] | None:
        if not self.path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
                row = connection.execute(
                    "SELECT manifest, runs FROM commands WHERE key = ?", (key,)
                ).fetchone()
            return (json.loads(row[0]), json.loads(row[1])) if row else None
        except (sqlite3.Error, ValueError):
            return None

    def write(self, key: str, manifest: str, runs: str) -> None:
        self.path.parent.mkdir(exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection, connection:
            # Not synced to disk: the record only lets a command be skipped,
            # a record lost to a power cut means the app starts and decides,
            # and the sync cost every command 10-25 ms before the next began.
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute(SCHEMA)
            connection.execute(
                "INSERT OR REPLACE INTO commands VALUES (?, ?, ?)", (key, manifest, runs)
            )


def sqlite_file(uri: str) -> Path | None:
    path = sqlite_path(uri)
    return path if path is not None and path.exists() else None


def all_finished(uri: str, run_ids: list[str]) -> bool:
    """Whether every run is finished in the SQLite store at `uri`."""
    path = sqlite_file(uri)
    return path is not None and all_finished_in_sqlite(path, run_ids)


class FinishedProof:
    """The CLI half of resuming in seconds (docs/internals.md, "Resuming in seconds"):
    asks the record in `.hydraflow/finished.db` whether a command is proven
    finished, and records a command that exited 0 with every run accounted
    for. Any doubt, or any error, means the command runs: a skip is never wrong."""

    def __init__(self, launch_dir: Path) -> None:
        self.commands = FinishedCommands(launch_dir)

    def is_finished(self, command: Command) -> bool:
        if command.runs is None:
            return False
        try:
            return self.commands.is_finished(command.argv)
        except Exception:
            return False

    def record(self, command: Command, manifest: Path, events: list[dict[str, object]]) -> None:
        if command.runs is None or not manifest.exists():
            return
        with contextlib.suppress(Exception):
            self.commands.record(command.argv, manifest, events, command.runs)
