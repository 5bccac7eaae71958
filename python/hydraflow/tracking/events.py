"""Job events for the `hydraflow` CLI: one JSON line per run start and end.

The CLI names a file in HYDRAFLOW_EVENTS; each job appends to it, so the CLI
can show progress and count what ran, resumed, was skipped or failed without
reading the store. Lines are written with one `write` on a file opened for
appending and stay short, so parallel writers never interleave.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

EVENTS_ENV = "HYDRAFLOW_EVENTS"
# Set to 1 by `hydraflow run --rerun`: every config runs again, as a new run.
RERUN_ENV = "HYDRAFLOW_RERUN"
# A skipped run made by code that has changed since names at most this many files.
MAX_CHANGED_FILES = 5
MAX_LINE = 512

FINISHED = "finished"
RESUMED = "resumed"
SKIPPED = "skipped"
FAILED = "failed"
KILLED = "killed"
BUSY = "busy"


def emit(event: str, overrides: Sequence[str], **fields: object) -> None:
    """Appends one event line if the CLI asked for them; never fails the job."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    record = {"event": event, "pid": os.getpid(), "time": time.time(), **fields}
    record["overrides"] = list(overrides)
    line = json.dumps(record, separators=(",", ":"))
    if len(line) >= MAX_LINE:
        record["overrides"] = None  # the long part; the CLI counts, it need not name
        line = json.dumps(record, separators=(",", ":"))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (line + "\n").encode())
        finally:
            os.close(descriptor)
    except OSError:
        pass  # progress is a convenience; the run itself is what matters


def started(overrides: Sequence[str], run_id: str, *, resumed: bool) -> None:
    emit("start", overrides, run_id=run_id, resumed=resumed)


def ended(
    overrides: Sequence[str],
    outcome: str,
    run_id: str | None = None,
    *,
    code_changed: Sequence[str] | None = None,
) -> None:
    """A run's end; `code_changed` for a run skipped although its code changed
    (the changed files, [] when they are not known)."""
    fields: dict[str, object] = {"run_id": run_id, "outcome": outcome}
    if code_changed is not None:
        fields["code_changed"] = list(code_changed[:MAX_CHANGED_FILES])
        fields["code_changed_count"] = len(code_changed)
    emit("end", overrides, **fields)


def enabled() -> bool:
    """Whether the `hydraflow` CLI reads this job's events (and so reports for it)."""
    return bool(os.environ.get(EVENTS_ENV))


def rerun_requested() -> bool:
    return os.environ.get(RERUN_ENV) == "1"
