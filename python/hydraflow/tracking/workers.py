"""The runs of a command's pool workers (Hydra's joblib launcher) at Ctrl-C.

`hydraflow run` sends SIGINT to the command's process group: the command
(the launcher process, which runs no job itself) and its loky workers get
it at once. The command's KeyboardInterrupt makes joblib abort its pool,
and loky SIGKILLs every worker (`kill_workers`, 40 to 170 ms after the
signal, measured with strace) while the workers are still ending their runs
KILLED: a run the kill wins over stayed RUNNING. So, in the command:

- `workers_end_first`: while Hydra runs the jobs, a stopping signal first
  waits until every run the command's workers have in progress has ended
  (its end event) or its process is gone, at most `WAIT_SECONDS`, and only
  then raises, so the workers end their runs themselves (log and all);
- `end_cut_off_runs`: once the pool is gone, a run still without its end
  (a worker killed all the same) is ended KILLED in the store, if it is
  still RUNNING and its owner is dead: never a run a live process runs.

A worker stopped while it claims a run (`lifecycle.Claimed`) ends what it
wrote itself; the command waits for an open claim as for a run, and when
the worker was killed all the same, finds the run it left by the config's
digest and the owner, the worker (its id was never told).

The command knows its workers' runs from the events file (the contract:
`hydraflow.protocol`; each start event names the worker's pool's process).
Run directly (`python app.py -m hydra/launcher=joblib ...`), where a Ctrl-C
reaches the same group the same way, the command gives its workers a
private events file of its own (`own_events_file`), read the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hydraflow import protocol
from hydraflow.signals import STOPPING, ignored, in_main_thread, raise_interrupted

# How long a signal waits for the workers' runs to end; the runner's grace
# period (10 s) escalates after it.
WAIT_SECONDS = 5.0
# How long a cut-off run's worker may take to be gone once its pool is stopped
# (a warm worker ends after its proxy, which loky kills).
GONE_SECONDS = 3.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class WorkerRun:
    """A run one of this process's pool workers started."""

    run_id: str
    pid: int
    overrides: list[str]
    outcome: str | None = None  # None: not ended (yet)


@dataclass(frozen=True)
class WorkerClaim:
    """A claim one of this process's pool workers began and has not followed
    with its run's start or end: a run it wrote is known by the config's
    digest and its owner, the worker, not by an id."""

    pid: int
    experiment: str
    digest: str
    overrides: list[str]


def worker_runs() -> list[WorkerRun]:
    """The runs the events file says this process's pool workers started, in
    order, each with its outcome. (A submit handler's commands share one
    file: each has its own workers.)"""
    return pool_events()[0]


def pool_events() -> tuple[list[WorkerRun], list[WorkerClaim]]:
    """The workers' runs (`worker_runs`) and their claims still open."""
    path = protocol.events_path()
    if not path:
        return [], []
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError:
        return [], []
    runs: dict[str, WorkerRun] = {}
    claims: dict[int, WorkerClaim] = {}
    for event in parsed(lines):
        kind, run_id, pid = event.get("event"), event.get("run_id"), event.get("pid")
        if not isinstance(pid, int):
            continue
        mine = event.get("parent") == os.getpid()
        overrides = event.get("overrides")
        overrides = overrides if isinstance(overrides, list) else []
        if kind == protocol.CLAIM and mine:
            experiment, digest = str(event.get("experiment")), str(event.get("digest"))
            claims[pid] = WorkerClaim(pid, experiment, digest, overrides)
            continue
        if kind in (protocol.START, protocol.END, protocol.CLAIM_OVER):
            claims.pop(pid, None)
        if not isinstance(run_id, str):
            continue
        if kind == protocol.START and mine:
            runs[run_id] = WorkerRun(run_id, pid, overrides)
        elif kind == protocol.END and run_id in runs:
            outcome = str(event.get("outcome"))
            runs[run_id] = WorkerRun(run_id, runs[run_id].pid, runs[run_id].overrides, outcome)
    return list(runs.values()), list(claims.values())


def parsed(lines: list[bytes]) -> Iterator[dict[str, object]]:
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                yield event


def alive(pid: int) -> bool:
    from hydraflow.tracking.owner import process_start

    return process_start(pid) != ""


def running_elsewhere() -> list[int]:
    """The workers still alive with a run not ended or a claim open."""
    runs, claims = pool_events()
    busy = [run.pid for run in runs if run.outcome is None] + [claim.pid for claim in claims]
    return [pid for pid in busy if alive(pid)]


def wait_until(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


Handler = Callable[[int, FrameType | None], object]


class Waiting:
    """Handlers that wait for the workers' runs before they raise; a signal
    arriving while one waits (a second Ctrl-C, the runner's SIGTERM) raises
    at once."""

    def __init__(self) -> None:
        self.now = False

    def before(self, raise_it: Handler) -> Handler:
        def handler(signum: int, frame: FrameType | None) -> object:
            if not self.now:
                self.now = True
                try:
                    wait_until(lambda: not running_elsewhere(), WAIT_SECONDS)
                finally:
                    self.now = False
            return raise_it(signum, frame)

        return handler


@contextlib.contextmanager
def workers_end_first() -> Iterator[None]:
    """During the block, a stopping signal whose handler only raises (Python's
    for SIGINT, hydraflow's for SIGTERM and SIGHUP) waits for the workers'
    runs first; a handler the app set is kept."""
    if not protocol.events_path() or not in_main_thread():
        yield
        return
    raising: tuple[object, ...] = (signal.default_int_handler, raise_interrupted)
    waiting = Waiting()
    previous = {}
    for signum in STOPPING:
        current = signal.getsignal(signum)
        if current in raising:
            previous[signum] = current
            signal.signal(signum, waiting.before(current))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextlib.contextmanager
def own_events_file() -> Iterator[None]:
    """Outside `hydraflow run`, the command's pool workers (which inherit its
    environment) write their runs' events to a private file for the block;
    under it, they write them to the runner's."""
    if protocol.enabled():
        yield
        return
    previous = os.environ.get(protocol.POOL_EVENTS_ENV)
    os.environ[protocol.POOL_EVENTS_ENV] = private_events_file()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(protocol.POOL_EVENTS_ENV, None)
        else:
            os.environ[protocol.POOL_EVENTS_ENV] = previous


@functools.cache
def private_events_file() -> str:
    """This process's file, the same for every block: loky keeps its workers
    (and the environment they started with) for the next sweep of the
    process. Its folder is removed as the process exits."""
    folder = tempfile.mkdtemp(prefix="hydraflow-pool-")
    creator = os.getpid()

    def remove() -> None:
        if os.getpid() == creator:  # not in a forked child that exits so
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return os.path.join(folder, "events.jsonl")


def end_cut_off_runs(uri: str, launch_dir: Path) -> list[str]:
    """The workers' runs an interrupt ended: those that ended KILLED, and
    those cut off (no end event), which are ended KILLED here once their
    process is gone, as their own `finally` would have, with an end event
    for the runner. Further signals are ignored: it is short, must be whole,
    and the first signal's exit follows."""
    with ignored():
        runs, claims = pool_events()
        cut_off = [run for run in runs if run.outcome is None]
        pids = [run.pid for run in cut_off] + [claim.pid for claim in claims]
        wait_until(lambda: not any(alive(pid) for pid in pids), GONE_SECONDS)
        cut_off += [run for claim in claims for run in left_by(uri, claim)]
        ended = [run.run_id for run in cut_off if mark_killed(uri, launch_dir, run)]
        killed = [run.run_id for run in runs if run.outcome == protocol.KILLED]
    return killed + ended


def left_by(uri: str, claim: WorkerClaim) -> list[WorkerRun]:
    """The runs of the claim's config whose owner is its worker: those it
    wrote before it was killed, their ids never told."""
    import logging
    import socket

    from mlflow import MlflowClient

    from hydraflow.mlflow_schema import OWNER_TAG
    from hydraflow.remote import masked
    from hydraflow.store import retry_busy
    from hydraflow.tracking.identity import find_runs
    from hydraflow.tracking.owner import Owner

    try:
        client = MlflowClient(uri)
        experiment = retry_busy(lambda: client.get_experiment_by_name(claim.experiment))
        found = (
            [] if experiment is None else find_runs(client, experiment.experiment_id, claim.digest)
        )
    except Exception as error:
        logging.getLogger("hydraflow").warning(
            "the run of %s may be left RUNNING: %s", " ".join(claim.overrides), masked(str(error))
        )
        return []
    owners = [Owner.from_tag(run.data.tags.get(OWNER_TAG)) for run in found]
    return [
        WorkerRun(run.info.run_id, claim.pid, claim.overrides)
        for run, owner in zip(found, owners, strict=True)
        if owner is not None and owner.pid == claim.pid and owner.host == socket.gethostname()
    ]


def mark_killed(uri: str, launch_dir: Path, run: WorkerRun) -> bool:
    """Ends the run KILLED if it is RUNNING and its owner is dead; under the
    store's lock on SQLite, so that no process takes it over meanwhile (a
    tracking server has no lock: its owner is judged just before)."""
    import logging

    from mlflow import MlflowClient

    from hydraflow.remote import masked
    from hydraflow.store import lock_for, retry_busy, sqlite_path
    from hydraflow.tracking.owner import owner_alive

    local = sqlite_path(uri) is not None
    try:
        client = MlflowClient(uri)
        with lock_for(uri, launch_dir) if local else contextlib.nullcontext():
            found = retry_busy(lambda: client.get_run(run.run_id))
            if found.info.status != "RUNNING" or owner_alive(found.data.tags) is not None:
                return False
            retry_busy(lambda: client.set_terminated(run.run_id, "KILLED"))
    except Exception as error:
        logging.getLogger("hydraflow").warning(
            "run %s was cut off and could not be marked KILLED: %s", run.run_id, masked(str(error))
        )
        return False
    protocol.ended(run.overrides, protocol.KILLED, run.run_id)
    return True
