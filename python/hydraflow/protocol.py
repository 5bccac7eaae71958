"""The contract between `hydraflow run` (the runner) and `@hydraflow.main`
(the app), owned here and imported by both sides. Only the standard library
is used, so importing it costs nothing.

- HYDRAFLOW_EVENTS names a file the app appends one JSON line to per run
  start and end, so the runner can show progress and count what ran,
  resumed, was skipped or failed without reading the store. Lines are
  written with one `write` on a file opened for appending and stay short, so
  parallel writers never interleave.
- An end event carries one of the outcome words below. A start event in a
  pool worker (Hydra's joblib launcher) carries `parent`, the pid of the
  command whose pool it is, which ends its workers' runs at Ctrl-C
  (`hydraflow.tracking.workers`). Outside `hydraflow run`, a command keeps
  such lines for itself (its pool workers' runs) in a private file that
  HYDRAFLOW_POOL_EVENTS names. A pool worker also writes a CLAIM line (the
  experiment and the config's digest) as it claims a run, whose id it may
  not learn if stopped, and a CLAIM_OVER line if the claim is left by an
  exception: the command waits for an open claim too, and finds the run a
  killed worker left by its digest and owner.
- HYDRAFLOW_INPUTS names a file the app writes its inputs manifest to (see
  `hydraflow.tracking.inputs`): the store, a digest of every input file, the
  package versions, and whether the configs are provable from files alone.
- A skipped run made by code that has changed since carries CODE_CHANGED (up
  to MAX_CHANGED_FILES of the changed files) and CODE_CHANGED_COUNT; the
  runner then says so once per job, and never proves such a command finished.
- HYDRAFLOW_RERUN=1 (`hydraflow run --rerun`) asks the app to run every
  config again, as a new run.
- The runner stops a command with SIGINT whatever signal it got (so apps
  end their runs KILLED); before that it appends a SIGNAL line naming the
  signal it got to the command's events file, so the app's last line names
  what the user sent (`interrupted by SIGTERM`), not the SIGINT.
- A submit handler that returns before its commands' runs end (`hydraflow
  slurm --no-wait`) appends a SUBMITTED line (with the scheduler's `job` id)
  to its own events file: the runner then says the commands were submitted,
  not waited for, rather than finished with their runs not reported.
- HYDRAFLOW_STOPPING holds the job's `stopping:` from the jobs file as JSON
  (`{"rule": "median", "direction": "min", "warmup_steps": 2, "min_runs": 3}`
  or `{"rule": "none"}`); it wins over the decorator's `stopping=`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EVENTS_ENV = "HYDRAFLOW_EVENTS"
POOL_EVENTS_ENV = "HYDRAFLOW_POOL_EVENTS"
INPUTS_ENV = "HYDRAFLOW_INPUTS"
RERUN_ENV = "HYDRAFLOW_RERUN"
STOPPING_ENV = "HYDRAFLOW_STOPPING"
MAX_LINE = 512

# The event kinds.
START = "start"
END = "end"
# Written by a pool worker as it claims a run, and if an exception leaves the claim.
CLAIM = "claim"
CLAIM_OVER = "claim-over"
# Written by the runner: the signal it got, before it asks the command to stop.
SIGNAL = "signal"
# Written by a submit handler that returns without waiting for the runs.
SUBMITTED = "submitted"
# How much of an events file's end is read for the runner's SIGNAL line.
SIGNAL_TAIL_BYTES = 64 * 1024

FINISHED = "finished"
RESUMED = "resumed"
SKIPPED = "skipped"
FAILED = "failed"
KILLED = "killed"
BUSY = "busy"
# Ended early by `hydraflow.report`'s rule: FINISHED in MLflow, never run again.
STOPPED = "stopped"
# The order the runner's summary names outcomes in.
OUTCOMES = (FINISHED, RESUMED, STOPPED, SKIPPED, FAILED, KILLED, BUSY)
# A run that ended so is done: its command may be proven finished.
DONE_OUTCOMES = frozenset({FINISHED, RESUMED, STOPPED, SKIPPED})
# The fields of a skipped run's end event when its code changed since.
CODE_CHANGED = "code_changed"
CODE_CHANGED_COUNT = "code_changed_count"
MAX_CHANGED_FILES = 5


def emit(event: str, overrides: Sequence[str], **fields: object) -> None:
    """Appends one event line if the CLI (or the command, for its pool
    workers) asked for them; never fails the job."""
    path = events_path()
    if not path:
        return
    record = {"event": event, "pid": os.getpid(), "time": time.time(), **fields}
    record["overrides"] = list(overrides)
    line = json.dumps(record, separators=(",", ":"))
    if len(line) >= MAX_LINE:
        record["overrides"] = None  # the long part; the CLI counts, it need not name
        line = json.dumps(record, separators=(",", ":"))
    append_line(Path(path), line)


def events_path() -> str | None:
    """The runner's events file; else the command's own, for its pool workers."""
    return os.environ.get(EVENTS_ENV) or os.environ.get(POOL_EVENTS_ENV) or None


def append_line(path: Path, line: str) -> None:
    """One `write` on a file opened for appending: never torn by another writer."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (line + "\n").encode())
        finally:
            os.close(descriptor)
    except OSError:
        pass  # progress is a convenience; the run itself is what matters


def note_signal(path: Path, signum: int) -> None:
    """The runner's side: the signal it got, for the app behind `path`."""
    record = {"event": SIGNAL, "signal": int(signum), "time": time.time()}
    append_line(path, json.dumps(record, separators=(",", ":")))


def submitted_not_waited(job_id: str) -> None:
    """The handler's side: its commands went to a scheduler (job `job_id`)
    and it returns without waiting for them; nothing outside the runner."""
    path = os.environ.get(EVENTS_ENV)
    if path:
        record = {"event": SUBMITTED, "job": job_id, "time": time.time()}
        append_line(Path(path), json.dumps(record, separators=(",", ":")))


def runner_signal() -> int | None:
    """The app's side: the signal the runner last noted in this command's
    events file (read from its end); None outside the runner or before one."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - SIGNAL_TAIL_BYTES))
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if b'"event":"signal"' not in line:
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("signal"), int):
                return int(event["signal"])
    return None


def started(overrides: Sequence[str], run_id: str, *, resumed: bool) -> None:
    """A run's start; `parent` names the command whose pool worker runs it."""
    emit(START, overrides, run_id=run_id, resumed=resumed, parent=pool_parent())


def claiming(overrides: Sequence[str], experiment: str, digest: str) -> None:
    """A pool worker begins to claim the run of `digest` in `experiment`."""
    parent = pool_parent()
    if parent is not None:
        emit(CLAIM, overrides, experiment=experiment, digest=digest, parent=parent)


def claim_over(overrides: Sequence[str]) -> None:
    """A pool worker's claim was left by an exception (what it left is ended)."""
    parent = pool_parent()
    if parent is not None:
        emit(CLAIM_OVER, overrides, parent=parent)


def pool_parent() -> int | None:
    """The pid of the process whose pool started this one (a joblib or
    multiprocessing worker, warm or cold); None for a process started otherwise."""
    multiprocessing = sys.modules.get("multiprocessing")  # a worker has it imported
    parent = multiprocessing.parent_process() if multiprocessing is not None else None
    return None if parent is None else parent.pid


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
        fields[CODE_CHANGED] = list(code_changed[:MAX_CHANGED_FILES])
        fields[CODE_CHANGED_COUNT] = len(code_changed)
    emit(END, overrides, **fields)


def enabled() -> bool:
    """Whether the runner reads this job's events (and so reports for it)."""
    return bool(os.environ.get(EVENTS_ENV))


def rerun_requested() -> bool:
    return os.environ.get(RERUN_ENV) == "1"


def set_stopping(settings: Mapping[str, Any] | None) -> None:
    """Gives the job's apps its stopping rule (None: the decorator's)."""
    if settings is None:
        os.environ.pop(STOPPING_ENV, None)
    else:
        os.environ[STOPPING_ENV] = json.dumps(dict(settings), separators=(",", ":"))


def stopping_settings() -> Any:
    """The jobs file's stopping rule, as JSON read back; None when not set.
    Raises ValueError when the variable is not JSON."""
    text = os.environ.get(STOPPING_ENV)
    return None if not text else json.loads(text)


# The inputs manifest.
VERSIONED = ("hydra-core", "omegaconf", "hydraflow")


def new_manifest(store_uri: str, files: Mapping[str, str], *, provable: bool) -> dict[str, Any]:
    return {
        "store": store_uri,
        "files": dict(files),
        "versions": package_versions(),
        "provable": provable,
    }


def manifest_store(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("store", ""))


def is_provable(manifest: Mapping[str, Any]) -> bool:
    return bool(manifest.get("provable"))


def inputs_unchanged(manifest: Mapping[str, Any]) -> bool:
    """Whether the manifest is provable and still true: the same package
    versions, and every input file with the same digest."""
    if not is_provable(manifest):
        return False
    if manifest.get("versions") != package_versions():
        return False
    files: dict[str, str] = manifest.get("files", {})
    return all(file_digest(Path(path)) == digest for path, digest in files.items())


def file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = ""
    return versions
