"""The workers of a warm command's process pool (loky's, as Hydra's joblib
launcher starts them) run from a warm interpreter and are what cold ones
are. The oracle is `--cold`: each worker's process as a job sees it (argv,
path, directory, environment, descriptors, `__main__`, OpenBLAS's threads,
signal handlers, the collector), the outputs, the runs (read with MLflow's
own client) and how a Ctrl-C or a kill ends them. Real Hydra, joblib, MLflow
and processes throughout."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hydraflow.handoff_hook import HANDOFF_ENV
from hydraflow.runner.executors.warm import COLD_ENV, MLFLOW_SESSION_ENV

from tests.conftest import (
    HYDRAFLOW,
    alive,
    kill_group,
    proc_stat,
    run_in_own_group,
    user_environment,
)

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")

# Each job, in its pool worker, writes what its process is to probe-A.json.
APP = r"""
import contextlib, ctypes, gc, json, multiprocessing, os, re, signal, sys, time
import hydraflow
import mlflow

def blas_threads():
    maps = open("/proc/self/maps").read()
    for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(library, name):
                return getattr(library, name)()
    return None

def descriptors():
    found = {}
    for entry in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed by now
            found[entry] = re.sub(r"\[\d+\]", "", os.readlink(f"/proc/self/fd/{entry}"))
    return found

def handler_name(handler):
    return getattr(handler, "__qualname__", str(handler))

@hydraflow.main({"a": "x"})
def app(run, cfg):
    main = sys.modules["__main__"]
    probe = {
        "warm": "hydraflow.runner.executors.warm_server" in sys.modules,
        "argv": sys.argv, "orig_argv": sys.orig_argv, "executable": sys.executable,
        "path": sys.path, "cwd": os.getcwd(), "flags": repr(sys.flags),
        "environ": {k: v for k, v in os.environ.items() if k not in IGNORED},
        "main": [main.__name__, getattr(main, "__file__", None)],
        "descriptors": descriptors(),
        "blas_threads": blas_threads(),
        "handlers": {s.name: handler_name(signal.getsignal(s))
                     for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD)},
        "collector": [gc.isenabled(), gc.get_threshold()],
        "process": multiprocessing.current_process().name.rstrip("0123456789"),
    }
    with open(f"probe-{cfg.a}.json", "w") as file:
        json.dump(probe, file)
    mlflow.log_metric("twice", 2 * len(cfg.a))
    print(f"app a={cfg.a} warm={probe['warm']}", flush=True)
    if cfg.a.startswith("sleep"):
        open(f"running-{os.getpid()}", "w").close()
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            open(f"interrupted-{cfg.a}", "w").close()
            raise

def stop_slowly(signum, frame):
    time.sleep(1)  # its workers end their jobs before the pool is stopped (and they killed)
    raise KeyboardInterrupt

if __name__ == "__main__":
    signal.signal(signal.SIGINT, stop_slowly)
    app()
"""

JOBS = """
jobs:
  pooled:
    run: {python} app.py
    add: hydra/launcher=joblib hydra.launcher.n_jobs=2
    sets:
      - all: a={values}
"""


def folder_for(tmp_path: Path, name: str, values: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP).replace("IGNORED", repr(IGNORED)))
    (folder / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable, values=values))
    return folder


# A variable a warm and a cold worker may differ in: MLflow's telemetry
# session (one per process tree).
IGNORED = (MLFLOW_SESSION_ENV,)


def environment() -> dict[str, str]:
    """The user's, the same for a warm run and a cold one (this process's
    own changes as it goes: importing MLflow imports polars, which adds to
    a variable its import in the apps adds to again)."""
    environment = {k: v for k, v in USER_ENVIRONMENT.items() if k not in (COLD_ENV, HANDOFF_ENV)}
    # MLflow's telemetry thread opens a socket when it likes, in any process:
    # off, so that the descriptors a job sees are the worker's own.
    return {**environment, "MLFLOW_DISABLE_TELEMETRY": "true"}


USER_ENVIRONMENT = user_environment()


def run_job(folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [HYDRAFLOW, "run", "pooled", "-v", *flags]
    return run_in_own_group(command, folder, environment(), timeout=300)


def start_job(
    folder: Path, *flags: str, stderr: int = subprocess.PIPE, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [HYDRAFLOW, "run", "pooled", "-v", *flags],
        cwd=folder,
        env={**environment(), **env},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def probes(folder: Path) -> dict[str, dict[str, object]]:
    """Each job's probe, with what differs from run to run made general: the
    folders, the sweep's ULID, which worker ran it, and the numbers its
    descriptors have (as its command happened to open them), and the
    store's connections."""
    found = {}
    for path in sorted(folder.glob("probe-*.json")):
        text = path.read_text().replace(str(folder), "FOLDER")
        text = re.sub(r"multirun/[0-9A-Z]{26}", "multirun/ULID", text)
        text = re.sub(r"/\.hydraflow-events-[^/]+/", "/EVENTS/", text)
        text = re.sub(r"LokyProcess-\d+", "LokyProcess-N", text)
        text = re.sub(r'"--pipe", "\d+"', '"--pipe", "N"', text)
        probe = json.loads(text)
        # The store's own (MLflow's connections) grow with the jobs a worker
        # ran before, which the pool decides: the others are what it was given.
        given = [kind for kind in probe["descriptors"].values() if "mlflow.db" not in kind]
        probe["descriptors"] = sorted(given)
        found[path.stem.removeprefix("probe-")] = probe
    return found


def recorded_runs(folder: Path) -> list[tuple[str, str, float | None]]:
    """(a, status, the metric) of every run, as MLflow reads the store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return sorted((r.data.params["a"], r.info.status, r.data.metrics.get("twice")) for r in runs)


def app_lines(stdout: str) -> list[str]:
    return sorted(line for line in stdout.splitlines() if line.startswith("app "))


WORKER_STARTS_WARM = "pool workers of warm commands start from the warm interpreter"


def warm_and_cold(tmp_path: Path, app: str) -> list[tuple[subprocess.CompletedProcess[str], Path]]:
    """One job of one command running `app`, whose own pool starts workers
    (no Hydra launcher of theirs): warm, then `--cold`, each in its folder."""
    ended = []
    for flags in ((), ("--cold",)):
        folder = tmp_path / f"run{len(flags)}"
        folder.mkdir()
        (folder / "app.py").write_text(app)
        jobs = JOBS.replace("    add: hydra/launcher=joblib hydra.launcher.n_jobs=2\n", "")
        (folder / "hydraflow.yaml").write_text(jobs.format(python=sys.executable, values="x"))
        ended.append((run_job(folder, *flags), folder))
    assert WORKER_STARTS_WARM in ended[0][0].stderr
    return ended


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pool_workers_start_warm_and_are_what_cold_ones_are(tmp_path: Path) -> None:
    """Two commands of three jobs on two workers each: every worker's
    process, output and run are those of `--cold`, but it started warm,
    from an interpreter preloaded in the pool's environment (its OpenBLAS
    limited to the threads the pool gives each worker)."""
    seen = {}
    for flags in ((), ("--cold",)):
        folder = folder_for(tmp_path, f"pool{len(flags)}", "ab,cd,ef")
        jobs = folder / "hydraflow.yaml"
        jobs.write_text(jobs.read_text().replace("a=ab,cd,ef", "a=ab,cd,ef\n      - all: a=gh,ij"))
        ended = run_job(folder, *flags)
        assert ended.returncode == 0, ended.stderr
        seen[flags] = (probes(folder), app_lines(ended.stdout), recorded_runs(folder), ended)
    (warm, warm_lines, warm_runs, warm_end), (cold, cold_lines, cold_runs, cold_end) = seen.values()
    assert sorted(warm) == sorted(cold) == ["ab", "cd", "ef", "gh", "ij"]
    for name in warm:
        assert (warm[name].pop("warm"), cold[name].pop("warm")) == (True, False)
        differing = {key for key in warm[name] if warm[name][key] != cold[name].get(key)}
        assert not differing, {key: (warm[name][key], cold[name][key]) for key in differing}
        assert warm[name]["process"] == "LokyProcess-"
    assert warm["ab"]["environ"]["OPENBLAS_NUM_THREADS"] == str(warm["ab"]["blas_threads"])
    assert [line.replace("True", "False") for line in warm_lines] == cold_lines
    assert warm_runs == cold_runs == [(a, "FINISHED", 4.0) for a in ("ab", "cd", "ef", "gh", "ij")]
    assert "pool workers start from a warm interpreter (preloaded in " in warm_end.stderr
    assert WORKER_STARTS_WARM in warm_end.stderr
    assert "pool workers" not in cold_end.stderr


def workers_of(folder: Path, process: subprocess.Popen[str], count: int) -> list[int]:
    """The pids of the `count` jobs' workers, once each has started its job."""
    deadline = time.monotonic() + 180
    while len(found := sorted(folder.glob("running-*"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the workers never ran their jobs"
        time.sleep(0.05)
    return [int(path.name.removeprefix("running-")) for path in found]


def leftovers(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 30
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_ends_warm_workers_as_cold_ones(tmp_path: Path) -> None:
    """SIGINT to hydraflow's group while two workers sleep in their jobs:
    each job gets its KeyboardInterrupt and its run ends KILLED, hydraflow
    ends alike, no worker is left, warm or cold. (The app's own handler
    takes a second to stop its pool; without one, hydraflow's command waits
    for its workers' runs itself: tests/test_interrupts.py.)"""
    outcomes = []
    for flags in ((), ("--cold",)):
        folder = folder_for(tmp_path, f"interrupt{len(flags)}", "sleep1,sleep2")
        process = start_job(folder, *flags)
        try:
            workers = workers_of(folder, process, 2)
            time.sleep(1)  # the run has started
            os.killpg(process.pid, signal.SIGINT)
            process.communicate(timeout=120)
        finally:
            kill_group(process.pid)
        interrupted = sorted(path.name for path in folder.glob("interrupted-*"))
        outcomes.append(
            (process.returncode, leftovers(workers), interrupted, recorded_runs(folder))
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:3] == (130, [], ["interrupted-sleep1", "interrupted-sleep2"])
    assert [status for _, status, _ in outcomes[0][3]] == ["KILLED", "KILLED"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hydraflow_killed_leaves_no_warm_worker_behind(tmp_path: Path) -> None:
    """hydraflow killed by SIGKILL: its warm interpreters end, and with them
    (their proxies gone) every worker they forked."""
    folder = folder_for(tmp_path, "killed", "sleep")
    # hydraflow's temporary files go to a folder of the test's own: its
    # socket must leave nothing there (an abstract one has no file).
    temporary = tempfile.mkdtemp(prefix="handoff-")
    process = start_job(folder, stderr=subprocess.DEVNULL, TMPDIR=temporary)
    try:
        (worker,) = workers_of(folder, process, 1)
        command = int(proc_stat(worker)[1])
        assert not re.search(rb"popen_loky", Path(f"/proc/{worker}/cmdline").read_bytes())
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert leftovers([worker, command]) == []
        assert list(Path(temporary).glob("hydraflow-handoff-*")) == []
    finally:
        kill_group(process.pid)
        shutil.rmtree(temporary, ignore_errors=True)


# A pool whose worker leaves after 1 s idle (loky's own timeout), then is
# given another task: the pool must see it leave cleanly and start another.
IDLE_APP = r"""
import os, time
import hydraflow
from joblib.externals.loky import get_reusable_executor

@hydraflow.main({"a": "x"})
def app(run, cfg):
    pool = get_reusable_executor(max_workers=1, timeout=1)
    first = pool.submit(os.getpid).result(timeout=60)
    time.sleep(4)  # the worker times out, says so to its pool and ends
    began = time.monotonic()
    second = pool.submit(os.getpid).result(timeout=60)
    print(f"app another worker={second != first} quickly={time.monotonic() - began < 20}")

if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_warm_worker_that_leaves_idle_is_let_go_by_its_pool_as_a_cold_one(
    tmp_path: Path,
) -> None:
    """loky's worker, idle past its timeout, tells its pool it leaves by its
    pid: warm, the pool holds the proxy's, and must let it go as cold (no
    30 s wait for a worker it does not know, no pool broken by its end)."""
    outputs = [
        (ended.returncode, app_lines(ended.stdout), recorded_runs(folder))
        for ended, folder in warm_and_cold(tmp_path, IDLE_APP)
    ]
    assert (
        outputs[0]
        == outputs[1]
        == (
            0,
            ["app another worker=True quickly=True"],
            [("x", "FINISHED", None)],
        )
    )


# A worker that grows by 400 MB: loky (with psutil) lets it go after its
# next task and starts another, as it guards against leaks.
LEAK_APP = r"""
import os, sys, time
import hydraflow
from joblib.externals.loky import get_reusable_executor

def grow():
    sys.__dict__.setdefault("kept", []).append(b"x" * 400 * 2**20)

@hydraflow.main({"a": "x"})
def app(run, cfg):
    pool = get_reusable_executor(max_workers=1)
    first = pool.submit(os.getpid).result(timeout=60)
    time.sleep(1.2)  # the first check of its memory is after a second
    pool.submit(grow).result(timeout=60)
    time.sleep(1.5)
    second = pool.submit(os.getpid).result(timeout=60)
    print(f"app restarted after its leak={second != first}")

if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_warm_worker_that_leaks_is_restarted_as_a_cold_one(tmp_path: Path) -> None:
    """loky measures its worker's memory by the pid the worker reads: warm,
    that of the worker itself (not of its proxy), so a leak restarts it as cold."""
    outputs = [
        (ended.returncode, app_lines(ended.stdout))
        for ended, _ in warm_and_cold(tmp_path, LEAK_APP)
    ]
    restarted = importlib.util.find_spec("psutil") is not None  # loky checks only with it
    assert outputs[0] == outputs[1] == (0, [f"app restarted after its leak={restarted}"])


# The command ignores SIGINT and SIGHUP and blocks SIGUSR1 while it starts
# its pool (the usual way to keep Ctrl-C from the workers), then restores
# them; the worker tells what it started with.
SIGNALS_APP = r"""
import os, signal
import hydraflow
from joblib.externals.loky import get_reusable_executor

def seen():
    return (str(signal.getsignal(signal.SIGINT)), str(signal.getsignal(signal.SIGHUP)),
            sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))

@hydraflow.main({"a": "x"})
def app(run, cfg):
    before = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP)]
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    pool = get_reusable_executor(max_workers=1)
    pool.submit(os.getpid).result(timeout=60)  # started now, with them
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGHUP, before[1])
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
    print(f"app worker sees {pool.submit(seen).result(timeout=60)}")

if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_warm_worker_keeps_the_signals_its_command_ignored_and_blocked(tmp_path: Path) -> None:
    """exec keeps ignored signals and the blocked mask: a warm worker gets
    what its command left it, as a cold one does."""
    outputs = [
        (ended.returncode, app_lines(ended.stdout))
        for ended, _ in warm_and_cold(tmp_path, SIGNALS_APP)
    ]
    ignored = f"'{int(signal.SIG_IGN)}', '{int(signal.SIG_IGN)}', [{int(signal.SIGUSR1)}]"
    assert outputs[0] == outputs[1] == (0, [f"app worker sees ({ignored})"])
