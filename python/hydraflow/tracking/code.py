"""What code made a run: a hash of the script and of every project module it
imported (the files the inputs manifest hashes, `inputs.project_modules`),
recorded as tags when the run is created or resumed.

Runs are matched on their config alone, so a run made by code that has
changed since is still skipped; this record lets the skip say so, and
`hydraflow runs --code` show which runs older code made.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hydraflow.mlflow_schema import CODE_FILES_TAG, CODE_TAG, MAX_TAG_LENGTH
from hydraflow.protocol import file_digest
from hydraflow.tracking.inputs import project_modules

log = logging.getLogger("hydraflow")

# Enough to tell versions of a file apart, short enough for many in one tag.
FILE_HASH_LENGTH = 16
HYDRAFLOW_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Code:
    """Files (relative to the launch directory when inside it) and their hashes."""

    files: Mapping[str, str]

    @property
    def digest(self) -> str:
        lines = "".join(f"{path}\0{digest}\n" for path, digest in sorted(self.files.items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    def tags(self) -> dict[str, str]:
        """The digest, and the files when they fit in a tag (to name what changed)."""
        tags = {CODE_TAG: self.digest}
        files = json.dumps(dict(sorted(self.files.items())), separators=(",", ":"))
        if len(files) <= MAX_TAG_LENGTH:
            tags[CODE_FILES_TAG] = files
        return tags

    @classmethod
    def from_tags(cls, digest: str | None, files: str | None) -> RecordedCode | None:
        """What a run's tags say; None for a run made before code was recorded."""
        if not digest:
            return None
        try:
            named = json.loads(files) if files else None
        except ValueError:
            named = None
        return RecordedCode(digest, named if isinstance(named, dict) else None)

    def changed_since(self, recorded: RecordedCode) -> list[str] | None:
        """The files that differ from the recorded code (added, removed or
        edited), [] for the same code, None when it differs in files the
        record does not name."""
        if recorded.digest == self.digest:
            return []
        if recorded.files is None:
            return None
        paths = set(self.files) | set(recorded.files)
        return sorted(p for p in paths if self.files.get(p) != recorded.files.get(p))


@dataclass(frozen=True)
class RecordedCode:
    digest: str
    files: dict[str, str] | None


def current_code(launch_dir: Path) -> Code:
    """The code of this process now: the script and the project modules it has
    imported (hydraflow's own files are left out: its version is not the app's code)."""
    return Code(hashed_files(launch_dir.resolve(), frozenset(project_modules())))


@functools.cache
def hashed_files(launch_dir: Path, paths: frozenset[Path]) -> dict[str, str]:
    return {
        shown_path(path, launch_dir): file_digest(path)[:FILE_HASH_LENGTH]
        for path in paths
        if not path.is_relative_to(HYDRAFLOW_DIR)
    }


def shown_path(path: Path, launch_dir: Path) -> str:
    return str(path.relative_to(launch_dir)) if path.is_relative_to(launch_dir) else str(path)


def code_on_disk(recorded: RecordedCode, launch_dir: Path) -> list[str] | None:
    """The recorded files whose content on disk differs now (missing ones
    too); None when the record does not name its files."""
    if recorded.files is None:
        return None
    changed = []
    for path, digest in sorted(recorded.files.items()):
        on_disk = launch_dir / path
        if file_digest(on_disk)[:FILE_HASH_LENGTH] != digest:
            changed.append(path)
    return changed


_warned = False


def warn_once(changed: list[str] | None) -> None:
    """Says once per process that configs were skipped although their code changed."""
    global _warned
    if _warned:
        return
    _warned = True
    log.warning(
        "skipped runs were made by other code (%s); their results may be stale: "
        "run with --rerun (hydraflow run JOB --rerun) to run them again",
        changed_text(changed),
    )


def changed_text(changed: list[str] | None, limit: int = 5) -> str:
    if not changed:
        return "changed files not recorded"
    shown = ", ".join(changed[:limit])
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return f"changed: {shown}{more}"
