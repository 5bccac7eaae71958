"""Real services for the cluster tests, on 127.0.0.1 and in temporary
directories: a single-node SLURM cluster (munged, slurmctld, slurmd) and
PostgreSQL with an MLflow tracking server in front of it.

Session-scoped fixtures start each once and stop it at the end, together with
every process it started. `.ci/services.sh` installs the Debian packages;
without them (or without root) the tests skip, except under CI, where they
fail: CI must run them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

INSTALL_HINT = (
    "run .ci/services.sh as root (it apt-get installs slurmctld, slurmd, slurm-client, "
    "munge and postgresql) and `make install` (psycopg2-binary, hydra-submitit-launcher)"
)
# How long a daemon may take to come up on a loaded machine before the
# fixture gives up (and shows its log): a bound on a hang, not a measurement.
STARTUP_SECONDS = 300.0
STOP_SECONDS = 15.0


def unavailable(what: str, why: str) -> NoReturn:
    """Skips outside CI; under CI (which must run these tests) fails."""
    message = f"{what} unavailable: {why}; {INSTALL_HINT}"
    if "CI" in os.environ:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], what: str, log: Path | None = None) -> None:
    """Polls `ready` until it holds; past STARTUP_SECONDS fails with the log's tail."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not come up:\n{tail}")
        time.sleep(0.2)


def private_dir(prefix: str, owner: str | None = None) -> Path:
    """A fresh directory in /tmp that `owner` (a system user) can use: pytest's
    own temporary directories are closed to every user but ours."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner:
        shutil.chown(path, owner, owner)
    path.chmod(0o755)
    return path


@dataclass
class Daemons:
    """Processes started in their own process groups, stopped in reverse order."""

    started: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def start(
        self,
        argv: list[str],
        log: Path,
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                env=env,
                cwd=cwd,
            )
        self.started.append((process, stop_signal))
        return process

    def stop(self) -> None:
        while self.started:
            process, stop_signal = self.started.pop()
            stop_group(process, stop_signal)


def stop_group(process: subprocess.Popen[bytes], stop_signal: int) -> None:
    """Asks the process group to stop, then kills whatever is left of it."""
    for signum in (stop_signal, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def kill_processes_with_env(entry: str) -> list[int]:
    """SIGKILLs every process whose environment holds `entry` (as KEY=VALUE):
    array tasks run in sessions of their own, outside the daemons' groups."""
    killed = []
    needle = entry.encode() + b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if b"\0" + needle in b"\0" + environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def find_program(name: str, *folders: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in folders:
        for candidate in sorted(Path("/").glob(f"{folder.lstrip('/')}/{name}"), reverse=True):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


# The app the cluster tests run: one MLflow run per Hydra job, stamping its
# array task and times. It fails while a file `fail-I` exists (I = cfg.i) and
# holds, before finishing, while a file `hold` exists in the launch directory.
APP = """
import json, logging, os, time
from dataclasses import dataclass
from pathlib import Path
import hydraflow

log = logging.getLogger(__name__)

@dataclass
class Config:
    i: int = 0
    j: int = 0

@hydraflow.main(Config)
def app(run, cfg):
    start = time.time()
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    log.info("i=%s j=%s in task %s", cfg.i, cfg.j, task)
    if Path(f"fail-{cfg.i}").exists():
        raise RuntimeError(f"i={cfg.i} fails on purpose")
    Path(f"started-{run.info.run_id}").touch()
    while Path("hold").exists():
        time.sleep(0.2)
    with open("stamps.jsonl", "a") as out:
        out.write(json.dumps({"task": task, "start": start, "end": time.time()}) + "\\n")

if __name__ == "__main__":
    app()
"""


# --- SLURM ---------------------------------------------------------------

SLURM_CONF = """\
ClusterName=hydraflow
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MaxArraySize=100001
MaxJobCount=200000
MinJobAge=600
KillWait=10
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running single-node cluster; its commands need `env` (SLURM_CONF)."""

    root: Path
    conf: Path
    node: str
    cpus: int

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def is_idle(self) -> bool:
        states = self.command("sinfo", "--noheader", "--Node", "--format=%T").stdout.split()
        return states == ["idle"]

    def queue(self) -> list[str]:
        """The jobs and array tasks the controller still has pending or running."""
        return self.command("squeue", "--noheader", "--array", "--format=%i").stdout.split()

    def cancel_all(self) -> None:
        self.command("scancel", "--user", str(os.getuid()))
        wait_until(lambda: not self.queue(), "an empty queue")


def start_munge(daemons: Daemons, root: Path) -> Path:
    """munged as the `munge` user with a fresh key; returns its socket."""
    folder = root / "munge"
    folder.mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    for path in (folder, key):
        shutil.chown(path, "munge", "munge")
    socket_path = folder / "munge.socket"
    argv = [
        "munged",
        "--foreground",
        f"--key-file={key}",
        f"--socket={socket_path}",
        f"--log-file={folder / 'munged.log'}",
        f"--pid-file={folder / 'munged.pid'}",
        f"--seed-file={folder / 'munged.seed'}",
    ]
    daemons.start(argv, root / "munged.out", user="munge")
    wait_until(socket_path.exists, "munged", folder / "munged.log")
    return socket_path


def write_slurm_conf(root: Path, munge_socket: Path) -> SlurmCluster:
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    for name in ("state", "spool"):
        (root / name).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            node=node,
            cpus=cpus,
            root=root,
            munge_socket=munge_socket,
            controller_port=free_port(),
            node_port=free_port(),
        )
    )
    return SlurmCluster(root, conf, node, cpus)


def check_slurm_prerequisites() -> None:
    if os.geteuid() != 0:
        unavailable("SLURM", "the test cluster's daemons must start as root")
    for program in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel"):
        if not find_program(program, "/usr/sbin"):
            unavailable("SLURM", f"`{program}` is not installed")


@contextlib.contextmanager
def slurm_running() -> Iterator[SlurmCluster]:
    check_slurm_prerequisites()
    daemons = Daemons()
    root = private_dir("hydraflow-slurm-")
    cluster: SlurmCluster | None = None
    try:
        munge_socket = start_munge(daemons, root)
        cluster = write_slurm_conf(root, munge_socket)
        env = cluster.env
        sbin = "/usr/sbin"
        controller = find_program("slurmctld", sbin) or "slurmctld"
        node = find_program("slurmd", sbin) or "slurmd"
        daemons.start([controller, "-D", "-f", str(cluster.conf)], root / "slurmctld.out", env=env)
        daemons.start(
            [node, "-D", "-f", str(cluster.conf), "-N", cluster.node], root / "slurmd.out", env=env
        )
        wait_until(cluster.is_idle, "slurmctld and slurmd", root / "slurmctld.log")
        yield cluster
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.cancel_all()
        daemons.stop()
        if cluster is not None:
            kill_processes_with_env(f"SLURM_CONF={cluster.conf}")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node SLURM cluster for the whole session (SLURM_CONF in `.env`)."""
    with slurm_running() as cluster:
        yield cluster


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session's cluster, with an empty queue before and after the test."""
    slurm_cluster.cancel_all()
    yield slurm_cluster
    slurm_cluster.cancel_all()


# --- PostgreSQL and the MLflow tracking server ------------------------------


@dataclass
class TrackingServer:
    """`mlflow server` on PostgreSQL; clients reach it at `uri`."""

    uri: str
    database_uri: str
    artifacts: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": self.uri}


def postgres_bin() -> Path:
    for program in ("initdb", "postgres"):
        if not find_program(program, "/usr/lib/postgresql/*/bin"):
            unavailable("PostgreSQL", f"`{program}` is not installed")
    path = find_program("initdb", "/usr/lib/postgresql/*/bin")
    assert path is not None
    return Path(path).resolve().parent


def start_postgres(daemons: Daemons, root: Path) -> str:
    """A PostgreSQL server on 127.0.0.1 as the `postgres` user (trust auth);
    returns the SQLAlchemy URI of a fresh `mlflow` database."""
    import psycopg2

    bin_dir = postgres_bin()
    data = root / "data"
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "-N"],
        user="postgres",
        group="postgres",
        cwd=root,
        check=True,
        capture_output=True,
    )
    port = free_port()
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
    argv += ["-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"]
    # SIGINT is PostgreSQL's "fast shutdown": it does not wait for clients.
    daemons.start(argv, root / "postgres.log", user="postgres", stop_signal=signal.SIGINT, cwd=root)
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

    def accepts() -> bool:
        try:
            psycopg2.connect(dsn).close()
        except psycopg2.OperationalError:
            return False
        return True

    wait_until(accepts, "PostgreSQL", root / "postgres.log")
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE mlflow")
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"


def start_mlflow_server(daemons: Daemons, database_uri: str, root: Path) -> TrackingServer:
    port = free_port()
    artifacts = root / "artifacts"
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", database_uri, "--artifacts-destination", str(artifacts)]
    # One worker: uvicorn then runs in-process, without a supervisor that
    # kills a worker slow to start on a loaded machine; it serves requests
    # from a thread pool.
    argv += ["--workers", "1"]
    log = root / "mlflow-server.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # The server's job runner (eight worker processes, for MLflow's GenAI
    # jobs) has nothing to do for tracking.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    daemons.start(argv, log, env=env, cwd=root)
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(healthy, "mlflow server", log)
    return TrackingServer(uri, database_uri, artifacts)


@contextlib.contextmanager
def server_running() -> Iterator[TrackingServer]:
    if os.geteuid() != 0:
        unavailable("PostgreSQL", "the test database starts as the `postgres` user, from root")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("PostgreSQL", "the driver psycopg2 is not installed")
    postgres_bin()
    daemons = Daemons()
    database_root = private_dir("hydraflow-pg-", owner="postgres")
    database_root.chmod(0o700)
    server_root = private_dir("hydraflow-mlflow-")
    try:
        database_uri = start_postgres(daemons, database_root)
        yield start_mlflow_server(daemons, database_uri, server_root)
    finally:
        daemons.stop()
        shutil.rmtree(database_root, ignore_errors=True)
        shutil.rmtree(server_root, ignore_errors=True)


@pytest.fixture(scope="session")
def tracking_server() -> Iterator[TrackingServer]:
    """An MLflow tracking server on PostgreSQL for the whole session."""
    with server_running() as server:
        yield server
