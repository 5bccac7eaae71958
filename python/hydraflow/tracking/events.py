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
MAX_LINE = 512

FINISHED = "finished"
RESUMED = "resumed"
SKIPPED = "skipped"
FAILED = "failed"
KILLED = "killed"
BUSY = "busy"
# Ended early by `hydraflow.report`'s rule; FINISHED in MLflow, never run again.
STOPPED = "stopped"


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


def ended(overrides: Sequence[str], outcome: str, run_id: str | None = None) -> None:
    emit("end", overrides, run_id=run_id, outcome=outcome)
