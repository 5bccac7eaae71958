"""The submit hand-off: a submit handler's direct `python APP PARAMS` child,
one of the commands hydraflow submitted, runs from the warm interpreter and
ends as it would cold. The oracle is `--cold`: the same job's outputs, exit
statuses and runs (read with MLflow's own search_runs). Real Hydra, MLflow,
handlers and processes throughout."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hydraflow.handoff_hook import HANDOFF_ENV
from hydraflow.runner.executors.warm import COLD_ENV

from tests.conftest import (
    HYDRAFLOW,
    alive,
    kill_group,
    proc_stat,
    run_in_own_group,
    user_environment,
)

# Prints whether it runs warm (the warm server's module is loaded; a cold app never loads it).
APP = """
import os, resource, signal, sys, time
import hydraflow

def got_usr1(*_):
    print("app got SIGUSR1", flush=True)
    sys.exit(5)

@hydraflow.main({"a": "ok", "b": 1})
def app(run, cfg):
    if cfg.a == "usr1":  # ends by its own handler of a signal the proxy has no use for
        signal.signal(signal.SIGUSR1, got_usr1)
    warm = "hydraflow.runner.executors.warm_server" in sys.modules
    umask = os.umask(0)
    os.umask(umask)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fds = sorted(map(int, os.listdir("/proc/self/fd")))
    print(f"probe a={cfg.a} nice={os.nice(0)} umask={umask:o} nofile={limit}"
          f" cpus={sorted(os.sched_getaffinity(0))} fds={fds}")
    print(f"app a={cfg.a} b={cfg.b} warm={warm} parent={os.getppid()}", flush=True)
    open(f"running-{cfg.a}-{os.getpid()}", "w").close()
    if cfg.a == "exit3":
        sys.exit(3)
    if cfg.a == "raise":
        raise ValueError("boom")
    if cfg.a == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.a in ("sleep", "usr1"):
        time.sleep(120)
    if cfg.a == "nap":
        time.sleep(3)

if __name__ == "__main__":
    app()
"""

# Starts each line's command as HANDLER_MODE says, waits, prints its status.
HANDLER = """
import os, shlex, signal, subprocess, sys, time
from pathlib import Path
import resource

def named(line):
    return line.partition("a=")[2].split()[0]

def settle(line):
    a = named(line)
    if a == "nice":
        os.nice(7)
    elif a == "umask":
        os.umask(0o077)
    elif a == "nofile":
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    elif a == "affinity":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

def passed(line):
    return (os.open(os.devnull, os.O_RDONLY),) if named(line) == "fd" else ()

app, params = sys.argv[1], sys.argv[-1]
mode = os.environ.get("HANDLER_MODE", "direct")
Path(f"handler-{os.getpid()}").touch()
print(f"handler pid={os.getpid()}", flush=True)
for line in Path(params).read_text().splitlines():
    argv = [sys.executable, app, *shlex.split(line)]
    if mode == "shell":  # the shell waits, so it stays in between
        child = subprocess.Popen(shlex.join(argv) + "; exit $?", shell=True)
    elif mode == "other":
        child = subprocess.Popen([*argv, "b=2"])
    elif mode == "dash-c":
        code = "import runpy, sys; del sys.argv[0]; "
        code += "runpy.run_path(sys.argv[0], run_name='__main__')"
        child = subprocess.Popen([sys.executable, "-c", code, *argv[1:]])
    elif mode == "module":
        child = subprocess.Popen([sys.executable, "-m", "app", *argv[2:]])
    elif mode == "no-stdin":  # its stdin closed: `site` opens the hook's file as 0
        child = subprocess.Popen(argv, preexec_fn=lambda: os.close(0))
    elif mode == "settings":  # what each command's `a` names, set for it
        child = subprocess.Popen(argv, preexec_fn=lambda: settle(line), pass_fds=passed(line))
    else:
        child = subprocess.Popen(argv)
    if mode in ("terminate", "usr1", "leave"):
        while not list(Path().glob("running-*")):
            time.sleep(0.05)
    if mode in ("terminate", "usr1"):
        time.sleep(0.5 if mode == "usr1" else 0)  # its handler is in place
        child.send_signal(signal.SIGTERM if mode == "terminate" else signal.SIGUSR1)
    if mode == "leave":  # the handler ends without waiting
        continue
    print(f"status {child.wait()}", flush=True)
"""

# A warm server that dies just after its first fork, before it says so.
DIE_AFTER_FORK = """
import os, signal, sys

def pidfd_open(pid, *args):  # the server's next step after its fork
    if sys.argv[:1] == ["-c"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_pidfd_open(pid, *args)

real_pidfd_open, os.pidfd_open = os.pidfd_open, pidfd_open
"""

JOBS = """
jobs:
  handed:
    submit: {python} handler.py app.py
    sets:
      - each: a={values}
"""


def folder_for(tmp_path: Path, name: str, values: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP))
    (folder / "handler.py").write_text(textwrap.dedent(HANDLER))
    (folder / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable, values=values))
    return folder


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in user_environment().items() if k not in (COLD_ENV, HANDOFF_ENV)}
    return {**env, **extra}


def run_job(folder: Path, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [HYDRAFLOW, "run", "handed", "-v", *flags]
    return run_in_own_group(command, folder, environment(**env), timeout=240)


def start_job(
    folder: Path, *flags: str, stdout: int = subprocess.PIPE, **env: str
) -> subprocess.Popen[str]:
    """`hydraflow run handed -v FLAGS` in its own session, not waited for."""
    return subprocess.Popen(
        [HYDRAFLOW, "run", "handed", "-v", *flags],
        cwd=folder,
        env=environment(**env),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def app_lines(stdout: str) -> list[str]:
    """What the apps and the handler said, without pids."""
    lines = [line for line in stdout.splitlines() if line.startswith(("app ", "status "))]
    return [re.sub(r" parent=\d+", "", line) for line in lines]


def probe_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("probe ")]


def handed_off(stderr: str) -> int:
    return stderr.count("hydraflow: handed off to the warm interpreter: ")


def recorded_runs(folder: Path) -> list[tuple[str, str, str]]:
    """(a, b, status) of every run, as MLflow reads the store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return sorted((r.data.params["a"], r.data.params["b"], r.info.status) for r in runs)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_handlers_children_run_warm_and_end_as_they_do_cold(tmp_path: Path) -> None:
    """Exit 0, sys.exit(3), an exception, a death by SIGKILL: the handler sees
    the same statuses, the apps print the same, the store holds the same runs."""
    values = "ok,exit3,raise,signal"
    warm = run_job(folder_for(tmp_path, "warm", values))
    cold = run_job(folder_for(tmp_path, "cold", values), "--cold")
    expected = [
        *("app a=ok b=1 warm={}", "status 0"),
        *("app a=exit3 b=1 warm={}", "status 3"),
        *("app a=raise b=1 warm={}", "status 1"),
        *("app a=signal b=1 warm={}", f"status {-signal.SIGKILL}"),
    ]
    assert app_lines(warm.stdout) == [line.format(True) for line in expected], warm.stderr
    assert app_lines(cold.stdout) == [line.format(False) for line in expected], cold.stderr
    assert (handed_off(warm.stderr), handed_off(cold.stderr)) == (4, 0)
    assert "commands start cold: --cold" in cold.stderr
    for ended in (warm, cold):
        assert ended.returncode == 0, ended.stderr
        assert ended.stderr.count("ValueError: boom") == 1
    assert recorded_runs(tmp_path / "warm") == recorded_runs(tmp_path / "cold")
    # A run killed by SIGKILL stays RUNNING, as it does cold.
    statuses = [status for *_, status in recorded_runs(tmp_path / "warm")]
    assert sorted(statuses) == ["FAILED", "FAILED", "FINISHED", "RUNNING"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("shell", None),  # the app's parent is the shell: it never asks
        ("dash-c", None),  # `python -c`: it never asks
        ("no-stdin", "its standard streams are not all open"),
        (
            "other",
            r"'--multirun a=\w+ .* b=2' is not the parameters of a command hydraflow submitted",
        ),
    ],
)
def test_what_is_not_a_submitted_command_starts_cold(
    tmp_path: Path, mode: str, said: str | None
) -> None:
    ended = run_job(folder_for(tmp_path, mode, "ok,fine"), HANDLER_MODE=mode)
    b = 2 if mode == "other" else 1
    expected = [f"app a={a} b={b} warm=False" for a in ("ok", "fine")]
    assert app_lines(ended.stdout) == [expected[0], "status 0", expected[1], "status 0"]
    assert handed_off(ended.stderr) == 0
    if said is not None:  # said once, though two commands are refused for it
        found = re.findall(
            f"^hydraflow: a submitted command starts cold: {said}$", ended.stderr, re.M
        )
        assert len(found) == 1, ended.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_command_the_handler_gave_other_settings_starts_cold_with_them(tmp_path: Path) -> None:
    """A nice level, umask, descriptor limit, CPU affinity or descriptor the
    handler gives its child: the command is refused (each reason said once)
    and sees the settings as it does with --cold."""
    values = "nice,umask,nofile,affinity,fd"
    warm = run_job(folder_for(tmp_path, "warm", values), HANDLER_MODE="settings")
    cold = run_job(folder_for(tmp_path, "cold", values), "--cold", HANDLER_MODE="settings")
    assert probe_lines(warm.stdout) == probe_lines(cold.stdout), (warm.stderr, cold.stdout)
    assert "nice=7" in warm.stdout and "umask=77" in warm.stdout and "nofile=200" in warm.stdout
    assert app_lines(warm.stdout) == [
        line.replace("True", "False") for line in app_lines(cold.stdout)
    ]
    assert app_lines(warm.stdout).count("status 0") == 5
    assert handed_off(warm.stderr) == 0
    for setting in ("nice level", "umask", "resource limits", "CPU affinity"):
        said = f"hydraflow: a submitted command starts cold: the handler gave it another {setting}"
        assert warm.stderr.count(said) == 1, warm.stderr
    assert warm.stderr.count("the handler passes it descriptors beyond 0-2") == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_signal_the_app_handles_reaches_it_warm_as_cold(tmp_path: Path) -> None:
    """SIGUSR1 from the handler: the app's own handler runs (it exits 5),
    not the proxy's default death."""
    outcomes = []
    for flags in ((), ("--cold",)):
        folder = folder_for(tmp_path, f"usr1{len(flags)}", "usr1")
        ended = run_job(folder, *flags, HANDLER_MODE="usr1")
        outcomes.append((app_lines(ended.stdout)[1:], recorded_runs(folder)))
        assert handed_off(ended.stderr) == (0 if flags else 1), ended.stderr
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ["app got SIGUSR1", "status 5"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_commands_the_handler_left_running_are_killed_and_said_so(tmp_path: Path) -> None:
    folder = folder_for(tmp_path, "leave", "sleep")
    ended = run_job(folder, HANDLER_MODE="leave")
    app_pid = int(next(folder.glob("running-sleep-*")).name.rpartition("-")[2])
    assert not alive(app_pid), ended.stderr
    assert handed_off(ended.stderr) == 1, ended.stderr
    assert "the warm interpreter ended" not in ended.stderr
    said = "hydraflow: killed 1 handed-off command(s) the handler left running"
    assert ended.stderr.count(said) == 1, ended.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_module_run_with_python_m_is_handed_off(tmp_path: Path) -> None:
    ended = run_job(folder_for(tmp_path, "module", "ok"), HANDLER_MODE="module")
    assert app_lines(ended.stdout) == ["app a=ok b=1 warm=True", "status 0"], ended.stderr
    assert re.search(
        r"^hydraflow: handed off to the warm interpreter: --multirun a=ok ", ended.stderr, re.M
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_warm_command_outlives_its_killed_server_and_the_handler_gets_its_status(
    tmp_path: Path,
) -> None:
    folder = folder_for(tmp_path, "server", "nap")
    process = start_job(folder)
    try:
        app_pid = int(wait_for(folder, "running-nap-*", process).name.rpartition("-")[2])
        os.kill(parent_of(app_pid), signal.SIGKILL)  # the warm server
        stdout, stderr = process.communicate(timeout=120)
    finally:
        kill_group(process.pid)
    assert process.returncode == 0, stderr
    assert app_lines(stdout) == ["app a=nap b=1 warm=True", "status 0"]
    assert stderr.count("hydraflow: the warm interpreter ended (killed by SIGKILL)") == 1
    assert recorded_runs(folder) == [("nap", "1", "FINISHED")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_just_after_it_forked_runs_the_command_once(tmp_path: Path) -> None:
    """The fork cannot be told from a pipe of hydraflow's: it is found as
    hydraflow's orphaned child with the server's command line, and waited for."""
    folder = folder_for(tmp_path, "fork", "ok")
    (folder / "site").mkdir()
    (folder / "site" / "sitecustomize.py").write_text(DIE_AFTER_FORK)
    ended = run_job(folder, PYTHONPATH=str(folder / "site"))
    assert ended.returncode == 0, ended.stderr
    assert app_lines(ended.stdout) == ["app a=ok b=1 warm=True", "status 0"]
    assert len(list(folder.glob("running-ok-*"))) == 1
    said = "hydraflow: the warm interpreter ended (killed by SIGKILL): later commands start cold"
    assert ended.stderr.count(said) == 1
    assert recorded_runs(folder) == [("ok", "1", "FINISHED")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_handler_terminating_its_child_ends_the_warm_command(tmp_path: Path) -> None:
    """As cold: the handler's SIGTERM reaches the app (hydraflow.main ends its
    run KILLED and exits 143), and nothing is left."""
    outcomes = []
    for flags in ((), ("--cold",)):
        folder = folder_for(tmp_path, f"terminate{len(flags)}", "sleep")
        ended = run_job(folder, *flags, HANDLER_MODE="terminate")
        app_pid = int(next(folder.glob("running-sleep-*")).name.rpartition("-")[2])
        outcomes.append((app_lines(ended.stdout), alive(app_pid), recorded_runs(folder)))
        assert handed_off(ended.stderr) == (0 if flags else 1)
    runs = [("sleep", "1", "KILLED")]
    assert outcomes[0] == (["app a=sleep b=1 warm=True", "status 143"], False, runs)
    assert outcomes[1] == (["app a=sleep b=1 warm=False", "status 143"], False, runs)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hydraflow_killed_leaves_no_warm_command_behind(tmp_path: Path) -> None:
    folder = folder_for(tmp_path, "killed", "sleep")
    # hydraflow's temporary files go to a folder of the test's own: its
    # socket must leave nothing there (an abstract one has no file).
    temporary = tempfile.mkdtemp(prefix="handoff-")
    process = start_job(folder, stdout=subprocess.DEVNULL, TMPDIR=temporary)
    handler = None
    try:
        app_pid = int(wait_for(folder, "running-sleep-*", process).name.rpartition("-")[2])
        handler = int(next(folder.glob("handler-*")).name.rpartition("-")[2])
        assert parent_of(parent_of(app_pid)) == process.pid  # forked by the warm server
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(app_pid) or alive(handler):
            assert time.monotonic() < deadline, "the warm command outlived hydraflow"
            time.sleep(0.1)
        assert list(Path(temporary).glob("hydraflow-handoff-*")) == []
    finally:
        kill_group(process.pid)
        if handler is not None:
            kill_group(handler)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=30)
        shutil.rmtree(temporary, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_stops_a_warm_command_as_a_cold_one(tmp_path: Path) -> None:
    """SIGINT to hydraflow's group, as a terminal sends it: the handler's
    group gets it from hydraflow, the proxy passes it on; exit 130, the run
    KILLED, nothing left."""
    outcomes: list[tuple[object, ...]] = []
    for flags in ((), ("--cold",)):
        folder = folder_for(tmp_path, f"interrupt{len(flags)}", "sleep")
        process = start_job(folder, *flags)
        try:
            app_pid = int(wait_for(folder, "running-sleep-*", process).name.rpartition("-")[2])
            time.sleep(1)  # the app's run has started
            os.killpg(process.pid, signal.SIGINT)
            _, stderr = process.communicate(timeout=120)
        finally:
            kill_group(process.pid)
        summary = next(line for line in stderr.splitlines() if "handed: " in line)
        outcomes.append((process.returncode, re.sub(r"; [\d.]+ s$", "", summary)))
        outcomes.append((alive(app_pid), recorded_runs(folder), handed_off(stderr)))
    assert outcomes[0] == outcomes[2]
    assert outcomes[0][0] == 130
    assert outcomes[1] == (False, [("sleep", "1", "KILLED")], 1)
    assert outcomes[3] == (False, [("sleep", "1", "KILLED")], 0)


def test_the_hook_leaves_a_plain_python_unchanged() -> None:
    """The .pth line costs a dictionary look-up without the variable; with
    one that is not for this process, Python starts with the same modules."""
    hook = Path(sysconfig.get_path("purelib")) / "hydraflow_handoff.pth"
    assert hook.read_text().startswith("import os, sys; ")
    modules = "import sys; print(sorted(sys.modules))"
    without = subprocess.run(
        [sys.executable, "-c", modules], env=environment(), capture_output=True, text=True
    )
    assert without.returncode == 0 and "'hydraflow" not in without.stdout
    # Through a shell that waits, this process is the app's grandparent: it asks, in vain.
    variable = {HANDOFF_ENV: f"{os.getpid()}:commands:/nonexistent/socket"}
    for argv in (
        [sys.executable, "-c", modules],
        ["sh", "-c", '"$0" "$1" "$2"; exit $?', sys.executable, "-c", modules],
    ):
        ran = subprocess.run(argv, env=environment(**variable), capture_output=True, text=True)
        assert (ran.returncode, ran.stdout, ran.stderr) == (0, without.stdout, "")


def parent_of(pid: int) -> int:
    return int(proc_stat(pid)[1])


def wait_for(folder: Path, pattern: str, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 180
    while not (found := sorted(folder.glob(pattern))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"never saw {pattern}"
        time.sleep(0.05)
    return found[0]


# Stands in for a handler: runs `python app.py` (the script prints "ran"), prints its status.
FAKE_HANDLER = "import subprocess, sys; print(subprocess.call([sys.executable, 'app.py']))"


def fake_handler(folder: Path, socket_path: str) -> subprocess.Popen[str]:
    """The test is hydraflow to it: this process is the app's grandparent."""
    (folder / "app.py").write_text("print('ran')\n")
    variable = {HANDOFF_ENV: f"{os.getpid()}:commands:{socket_path}"}
    return subprocess.Popen(
        [sys.executable, "-c", FAKE_HANDLER],
        cwd=folder,
        env=environment(**variable),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("starting", [True, False])
def test_ctrl_c_before_a_command_goes_cold_ends_it_as_cold_python(
    tmp_path: Path, starting: bool
) -> None:
    """A SIGINT that came while hydraflow was asked, then a cold reply (after
    "starting" or not): the proxy dies of SIGINT saying KeyboardInterrupt,
    as cold Python interrupted at its start; the app never runs."""
    import socket as sockets

    from hydraflow.runner.executors.handoff import PEER_CREDENTIALS
    from hydraflow.warm_proxy import read_message, send_message

    path = str(tmp_path / "socket")
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        handler = fake_handler(tmp_path, path)
        try:
            connection, _ = listener.accept()
            with connection:
                fds: list[int] = []
                assert read_message(connection, fds) is not None
                for fd in fds:
                    os.close(fd)
                if starting:
                    send_message(connection, {"starting": True})
                credentials = connection.getsockopt(
                    sockets.SOL_SOCKET, sockets.SO_PEERCRED, PEER_CREDENTIALS.size
                )
                os.kill(PEER_CREDENTIALS.unpack(credentials)[0], signal.SIGINT)
                time.sleep(0.5)  # taken as pending
                send_message(connection, {"cold": "told so by the test"})
                stdout, stderr = handler.communicate(timeout=60)
        finally:
            kill_group(handler.pid)
    assert stdout == f"{-signal.SIGINT}\n", stderr
    assert stderr.strip().splitlines()[-1:] == ["KeyboardInterrupt"], stderr
    assert "Fatal Python error" not in stderr


def test_the_proxy_tells_nothing_to_a_listener_that_is_not_hydraflow(tmp_path: Path) -> None:
    """Another process took the socket's path: the proxy sends it nothing (no
    environment, no descriptors) and the app runs cold."""
    path = str(tmp_path / "socket")
    listener = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, path],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        handler = fake_handler(tmp_path, path)
        stdout, stderr = handler.communicate(timeout=60)
        received, _ = listener.communicate(timeout=60)
    finally:
        kill_group(listener.pid)
    assert (stdout, stderr) == ("ran\n0\n", "")
    assert received == "received 0 bytes\n"


# Listens at the path it is given; says how much the first who connects sent.
IMPOSTOR = """
import socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("listening", flush=True)
connection, _ = listener.accept()
connection.settimeout(3)
received = b""
try:
    while chunk := connection.recv(65536):
        received += chunk
except TimeoutError:
    pass
print(f"received {len(received)} bytes", flush=True)
"""


def test_v_never_prints_a_password_of_a_commands_parameters() -> None:
    from hydraflow.runner.executors.handoff import shown

    assert shown(["db.password=hunter2", "url=postgresql://u:pw@h/db", "x=1"]) == (
        "db.password=*** url=postgresql://u:***@h/db x=1"
    )


def test_the_hook_goes_cold_when_a_standard_stream_is_closed() -> None:
    """Python 3.13 closes the `.pth` file before the line runs: the closed
    stream's number would be the proxy's socket; the hook asks nothing then."""
    code = "from hydraflow.handoff_hook import standard_streams_open as o; print(o())"
    for closed in (None, 0):
        ran = subprocess.run(
            [sys.executable, "-c", code],
            env=environment(),
            preexec_fn=None if closed is None else (lambda: os.close(0)),
            capture_output=True,
            text=True,
        )
        assert ran.stdout == ("True\n" if closed is None else "False\n"), ran.stderr


# Another user's process asks at the socket named in a live job's
# HYDRAFLOW_HANDOFF, as a proxy would; prints the reply.
ANOTHER_USER_ASKS = """
import socket, sys
from hydraflow.handoff_hook import parts, socket_address
from hydraflow.warm_proxy import read_message, send_message

_, _, name = parts(sys.argv[1])
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(socket_address(name))
    request = {"argv": [sys.executable, "app.py", "a=sleep"], "env": {}, "cwd": sys.argv[2]}
    try:
        send_message(sock, request, [0, 1, 2])
        print(read_message(sock) or "closed")
    except OSError:  # closed before the request was all sent
        print("closed")
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_another_users_process_is_never_handed_off(tmp_path: Path) -> None:
    """The socket is abstract (no file, no file mode; its name is in
    /proc/net/unix for all to read): the kernel's word on the peer's uid
    closes another user's connection before anything of it is read."""
    from tests.test_histories_faults import as_user

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    folder = folder_for(tmp_path, "other-user", "sleep")
    process = start_job(folder)
    stderr = ""
    try:
        wait_for(folder, "running-sleep-*", process)
        handler = next(folder.glob("handler-*")).name.rpartition("-")[2]
        variable = next(
            entry.partition("=")[2]
            for entry in Path(f"/proc/{handler}/environ").read_text().split("\0")
            if entry.startswith(f"{HANDOFF_ENV}=")
        )
        assert variable.partition(":")[2].partition(":")[2].startswith("@hydraflow-handoff-")
        with as_user(65534) as user:
            asked = subprocess.run(
                [*user, sys.executable, "-c", ANOTHER_USER_ASKS, variable, str(folder)],
                capture_output=True,
                text=True,
                timeout=60,
            )
    finally:
        kill_group(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            _, stderr = process.communicate(timeout=60)
    # Closed unread: the asking process gets the end of the stream, and the
    # owner's output says nothing of it.
    assert (asked.stdout, asked.returncode) == ("closed\n", 0), asked.stderr
    assert "another user" not in stderr


def test_a_request_longer_than_the_bound_is_refused_unread() -> None:
    import socket
    import struct

    from hydraflow.warm_proxy import read_message

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(struct.pack("!I", 0x7FFFFFFF) + b"x" * 1024)
        with pytest.raises(ValueError, match="a message of 2147483647 bytes"):
            read_message(ours, [], max_size=64 * 2**20)
