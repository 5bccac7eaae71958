"""The executors with real subprocesses: sequential, parallel, failures,
interrupts, submit and call — through the installed `hydraflow` command."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydraflow.runner.executors.progress import Execution, eta_text

from tests.conftest import HYDRAFLOW, Tutorial, recorded, run_cli, user_environment

Project = Callable[[str], Path]

TWO_BY_TWO = """
jobs:
  j:
    run: python record.py {flags}
    sets:
      - each: a=1,2 b=x,y
        all: c=1:3
"""


def test_runs_every_command_in_order(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags=""))
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 0, result.stderr
    calls = recorded(folder)
    assert [c[1:3] for c in calls] == [
        ["a=1", "b=x"],
        ["a=1", "b=y"],
        ["a=2", "b=x"],
        ["a=2", "b=y"],
    ]
    assert all(c[0] == "--multirun" and c[3] == "c=1,2,3" for c in calls)
    assert result.stdout.count("ran --multirun") == 4
    assert result.stderr.count("to stderr") == 4
    assert "j: 4 commands: 4 finished; 12 runs: 12 not reported" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_stops_at_the_first_failure_with_its_status(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--fail-if b=y:3"))
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 3
    assert len(recorded(folder)) == 2
    assert (
        "command 2 failed with status 3: python record.py --fail-if b=y:3 --multirun a=1 b=y"
        in (result.stderr)
    )
    assert "j: 4 commands: 1 finished, 1 failed, 2 not started; 12 runs: 6 not reported" in (
        result.stderr
    )
    # The failed command's unreported runs are not counted as through; the first's are.
    assert "[2/4 commands, 3/12 runs, " in result.stderr


def test_keep_going_runs_the_rest(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--fail-if b=y:3"))
    result = run_cli("run", "j", "--keep-going", cwd=folder)
    assert result.returncode == 3
    assert len(recorded(folder)) == 4
    assert "j: 4 commands: 2 finished, 2 failed; " in result.stderr


def test_missing_program_fails_clearly_before_anything_runs(project: Project) -> None:
    folder = project("jobs:\n  j:\n    run: no-such-program-here\n")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 127
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.j.run: 'no-such-program-here' not found: "
        "no such program on PATH\n"
    )


def test_a_missing_python_script_fails_clearly_before_anything_runs(project: Project) -> None:
    """Python's own "can't open file" came per command, once the sweep ran."""
    folder = project("jobs:\n  j:\n    run: python trian.py\n    sets:\n      - each: a=1,2\n")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 127
    assert result.stderr == (
        f"Error: hydraflow.yaml: jobs.j.run: 'trian.py' does not exist (in {folder})\n"
    )
    assert recorded(folder) == []


def test_a_program_that_is_not_executable_fails_clearly(project: Project) -> None:
    folder = project("jobs:\n  j:\n    run: ./app.sh\n")
    (folder / "app.sh").write_text("echo hi\n")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 127
    assert "jobs.j.run: './app.sh' is not executable (chmod +x ./app.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_script_without_interpreter_line_fails_with_127(project: Project) -> None:
    folder = project("jobs:\n  j:\n    run: ./app.sh\n")
    (folder / "app.sh").write_bytes(b"\x7fELF not really")
    (folder / "app.sh").chmod(0o755)
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 127
    assert "command 1 could not start: './app.sh' is not a program the system can run" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_an_argument_over_the_system_limit_is_refused_before_anything_runs(
    project: Project,
) -> None:
    folder = project(
        "jobs:\n  j:\n    run: python record.py\n    sets:\n"
        "      - each: a=1,2\n      - all: x=0:99999\n"
    )
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: hydraflow.yaml: jobs.j.sets[1]: the argument "
        "'x=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,…' is 588,892 bytes, "
        "more than the 131,072 the system allows in one argument "
        "(Argument list too long)"
    )
    assert recorded(folder) == []  # no half-run sweep


def test_parallel_commands_overlap_and_prefix_output(project: Project) -> None:
    """Each command waits until all four have started: they can only all see
    four starts if they overlapped (no start-time arithmetic)."""
    folder = project(TWO_BY_TWO.format(flags=""))
    (folder / "barrier.py").write_text(BARRIER)
    (folder / "hydraflow.yaml").write_text(
        "jobs:\n  j:\n    run: python barrier.py 4\n    sets:\n      - each: a=1,2 b=x,y\n"
    )
    result = run_cli("run", "j", "-j", "4", cwd=folder)
    assert result.returncode == 0, result.stderr
    seen = [json.loads(line) for line in (folder / "barrier.jsonl").read_text().splitlines()]
    assert [e["saw"] for e in seen if e["event"] == "end"] == [4, 4, 4, 4]
    prefixed = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert sorted(line.split("]")[0] for line in prefixed) == ["[1", "[2", "[3", "[4"]


BARRIER = """
import json, os, sys, time
need = int(sys.argv[1])
def log(**event):
    with open("barrier.jsonl", "a") as out:
        out.write(json.dumps(event) + "\\n")
def starts():
    with open("barrier.jsonl") as f:
        return sum(json.loads(line)["event"] == "start" for line in f)
log(event="start", pid=os.getpid())
deadline = time.time() + 60
while starts() < need and time.time() < deadline:
    time.sleep(0.05)
print("through", sys.argv[2:])
log(event="end", saw=starts())
"""


def test_parallel_failure_starts_nothing_new(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--fail-if a=1:5"))
    result = run_cli("run", "j", "-j", "2", cwd=folder)
    assert result.returncode == 5
    assert len(recorded(folder)) == 2


def wait_for_children(pid: int, count: int) -> list[int]:
    """The child processes of `pid`, once there are `count` (or after 30 s)."""
    deadline = time.time() + 30
    while len(child_pids(pid)) < count and time.time() < deadline:
        time.sleep(0.1)
    return child_pids(pid)


def child_pids(pid: int) -> list[int]:
    result = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    )
    return [int(p) for p in result.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return status not in ("Z", "X")


SUBMIT_HANDLER = """
import os, shutil, stat, sys
path = sys.argv[-1]
mode = stat.S_IMODE(os.stat(path).st_mode)
shutil.copy(path, "seen.txt")
with open("handler.txt", "w") as out:
    out.write(f"{oct(mode)} {sys.argv[1:-1]} {os.path.dirname(path) == os.getcwd()}")
print("handled", path)
sys.exit(int(os.environ.get("HANDLER_STATUS", "0")))
"""

SUBMIT = """
jobs:
  s:
    submit: python handler.py example.py
    sets:
      - each: width=250:350:100
        all: height=150,250
"""


def test_submit_hands_over_a_private_file_and_removes_it(project: Project) -> None:
    folder = project(SUBMIT)
    (folder / "handler.py").write_text(SUBMIT_HANDLER)
    result = run_cli("run", "s", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert (folder / "handler.txt").read_text() == "0o600 ['example.py'] True"
    lines = (folder / "seen.txt").read_text().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["--multirun", "width=250", "height=150,250"],
        ["--multirun", "width=350", "height=150,250"],
    ]
    assert all(line.split()[3] == "hydra.job.name=s" for line in lines)
    assert not list(folder.glob("hydraflow-submit-*"))
    assert "handled" in result.stdout
    assert "2 commands submitted by python handler.py example.py finished" in result.stderr
    assert "s: 2 commands: 2 finished; 4 runs:" in result.stderr  # as `hydraflow show` counts


def test_submit_exits_with_the_handlers_status_and_still_cleans_up(project: Project) -> None:
    folder = project(SUBMIT)
    (folder / "handler.py").write_text(SUBMIT_HANDLER)
    env_result = subprocess.run(
        [HYDRAFLOW, "run", "s"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "HANDLER_STATUS": "4"},
    )
    assert env_result.returncode == 4
    assert not list(folder.glob("hydraflow-submit-*"))
    # Which of its commands ran, only their runs tell: the summary says none
    # failed that the handler may never have started.
    assert "s: 2 commands: 2 submitted by a handler that failed with status 4; 4 runs:" in (
        env_result.stderr
    )


def test_submit_dry_run_writes_nothing(project: Project) -> None:
    folder = project(SUBMIT)
    result = run_cli("run", "s", "--dry-run", cwd=folder)
    assert result.returncode == 0
    handler, *lines = result.stdout.splitlines()
    assert handler.startswith(f"python handler.py example.py {folder}/hydraflow-submit-")
    assert len(lines) == 2
    assert not list(folder.glob("hydraflow-submit-*"))


CALLS = """
import json

def record(args):
    with open("calls.jsonl", "a") as out:
        out.write(json.dumps({"args": args}) + "\\n")

def explode(args):
    raise RuntimeError("boom")
"""


def test_call_runs_the_function_per_command(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: tasks.record --x\n    sets:\n      - each: a=1,2\n")
    (folder / "tasks.py").write_text(CALLS)
    result = run_cli("run", "c", cwd=folder)
    assert result.returncode == 0, result.stderr
    calls = recorded(folder)
    assert [c[:3] for c in calls] == [["--x", "--multirun", "a=1"], ["--x", "--multirun", "a=2"]]
    dry = run_cli("run", "c", "--dry-run", cwd=folder)
    assert dry.stdout.startswith("tasks.record(['--x', '--multirun', 'a=1', 'hydra.job.name=c'")


def test_call_exception_names_the_command(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: tasks.explode\n    sets:\n      - each: a=1,2\n")
    (folder / "tasks.py").write_text(CALLS)
    result = run_cli("run", "c", cwd=folder)
    assert result.returncode == 1
    assert "command 1 raised: tasks.explode(['--multirun', 'a=1'" in result.stderr
    assert "RuntimeError: boom" in result.stderr


def test_call_missing_function_is_a_clear_error(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: tasks.nothing\n  d:\n    call: nomodule.f\n")
    (folder / "tasks.py").write_text(CALLS)
    result = run_cli("run", "c", cwd=folder)
    assert result.returncode == 2
    assert "jobs.c.call: module 'tasks' has no function 'nothing'" in result.stderr
    result = run_cli("run", "d", cwd=folder)
    assert "cannot import module 'nomodule'" in result.stderr


def test_call_module_with_a_syntax_error_is_a_located_error(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: broken.f\n")
    (folder / "broken.py").write_text("def f(args):\n    return (\n")
    result = run_cli("run", "c", cwd=folder)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: hydraflow.yaml: jobs.c.call: cannot import module 'broken': syntax error in "
        f"{folder / 'broken.py'}, line 2: "
    )
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_call_of_a_hydra_app_is_refused_with_the_run_to_write(project: Project) -> None:
    """Called with a list, an app read the CLI's own command line or took the
    list for its config: a confusing failure per command."""
    folder = project("jobs:\n  a:\n    call: apps.tracked\n  b:\n    call: apps.plain\n")
    (folder / "apps.py").write_text(
        "import hydra, hydraflow\n"
        "@hydraflow.main({'x': 1})\n"
        "def tracked(cfg): pass\n"
        "@hydra.main(version_base=None)\n"
        "def plain(cfg): pass\n"
    )
    for job, function in (("a", "tracked"), ("b", "plain")):
        result = run_cli("run", job, cwd=folder)
        assert result.returncode == 2
        assert result.stderr == (
            f"Error: hydraflow.yaml: jobs.{job}.call: 'apps.{function}' is a Hydra app, which a "
            "call cannot run; run it with `run: python apps.py`\n"
        )


def test_call_module_raising_on_import_is_a_located_error(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: raising.f\n")
    (folder / "raising.py").write_text("raise RuntimeError('no GPU')\n")
    result = run_cli("run", "c", cwd=folder)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: hydraflow.yaml: jobs.c.call: importing module 'raising' raised "
        "RuntimeError: no GPU\n"
    )


def test_dry_run_prints_copy_pasteable_commands(project: Project) -> None:
    folder = project(
        "jobs:\n  j:\n    run: python record.py\n    sets:\n      - each: \"name='a b',c\"\n"
    )
    result = run_cli("run", "j", "--dry-run", cwd=folder)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("python record.py --multirun 'name='\"'\"'a b'\"'\"'' ")
    assert "j: 2 commands, 2 runs (dry run: nothing was run)" in result.stderr
    assert recorded(folder) == []
    # Pasting the line into a shell runs exactly that command.
    subprocess.run(lines[1], shell=True, cwd=folder, check=True, capture_output=True)
    assert recorded(folder)[0][1] == "name=c"


def test_interrupting_submit_still_removes_the_file(project: Project) -> None:
    folder = project(SUBMIT)
    (folder / "handler.py").write_text("import time\ntime.sleep(30)\n")
    process = launch(folder, "s")
    groups.extend(wait_for_children(process.pid, 1))  # each command leads its group
    assert list(folder.glob("hydraflow-submit-*"))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert not list(folder.glob("hydraflow-submit-*"))
    assert not list(folder.glob(".hydraflow-events-*"))
    assert (
        "s: 2 commands: 2 submitted by a handler that was interrupted; 4 runs: 4 not started"
        in (stderr)
    )


# A command that starts a grandchild (which ignores SIGINT and SIGTERM, as a
# stubborn worker might), records both, records each signal it gets, and
# exits on one unless told to ignore it: `tree.py --ignore=INT,TERM ...`.
TREE = """
import json, os, signal, subprocess, sys, time
ignore = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--ignore=")), [])
stubborn = (
    "import signal, sys, time; signal.signal(2, 1); signal.signal(15, 1); "
    "print('ready', flush=True); sys.stdout.close(); time.sleep(300)"
)
grandchild = subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE)
grandchild.stdout.readline()  # it ignores the signals from now on
def log(**event):
    with open("tree.jsonl", "a") as out:
        out.write(json.dumps({"pid": os.getpid(), **event}) + "\\n")
def on(signum, frame):
    name = signal.Signals(signum).name
    log(event="signal", signal=name)
    if name[3:] not in ignore:
        sys.exit(128 + signum)
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, on)
log(event="start", pgid=os.getpgid(0), grandchild=grandchild.pid)
while True:
    time.sleep(1)
"""

TREE_JOB = """
jobs:
  t:
    run: python tree.py {flags}
    sets:
      - each: a=1:4
"""


def tree_events(folder: Path) -> list[dict[str, object]]:
    path = folder / "tree.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_starts(folder: Path, count: int) -> list[dict[str, object]]:
    deadline = time.time() + 60
    while time.time() < deadline:
        starts = [e for e in tree_events(folder) if e["event"] == "start"]
        if len(starts) >= count:
            return starts
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} commands started: {tree_events(folder)}")


@pytest.fixture
def tree(project: Project) -> Iterator[Callable[[str], Path]]:
    """A project running tree.py; on teardown every process group the test
    made (hydraflow's and each command's) is killed, whatever happened."""
    folders: list[Path] = []

    def make(flags: str) -> Path:
        folder = project(TREE_JOB.format(flags=flags))
        (folder / "tree.py").write_text(TREE)
        folders.append(folder)
        return folder

    yield make
    for folder in folders:
        for event in tree_events(folder):
            if event["event"] == "start":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(str(event["pgid"])), signal.SIGKILL)


started: list[subprocess.Popen[str]] = []
groups: list[int] = []


@pytest.fixture(autouse=True)
def kill_launched() -> Iterator[None]:
    """Every hydraflow a test launched is killed with its process group on teardown."""
    yield
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    groups.clear()
    for process in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    started.clear()


def launch(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """hydraflow in its own process group, so teardown can kill it all."""
    process = subprocess.Popen(
        [HYDRAFLOW, "run", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    started.append(process)
    return process


def processes_of(starts: list[dict[str, object]]) -> list[int]:
    return [int(str(e[key])) for e in starts for key in ("pid", "grandchild")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_command_and_leaves_no_process(
    tree: Callable[[str], Path], signum: signal.Signals
) -> None:
    folder = tree("")
    process = launch(folder, "t", "-j", "2")
    starts = wait_for_starts(folder, 2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    # Every command was asked with SIGINT first, so an app can record its run KILLED.
    signals = [(e["pid"], e["signal"]) for e in tree_events(folder) if e["event"] == "signal"]
    assert sorted(signals) == sorted((e["pid"], "SIGINT") for e in starts)
    # The stubborn grandchildren are gone too.
    assert not [pid for pid in processes_of(starts) if alive(pid)]
    assert f"hydraflow: interrupted by {signum.name}; 2 commands not started" in stderr
    assert "t: 4 commands: 0 finished, 2 interrupted, 2 not started; 4 runs:" in stderr
    assert "failed" not in stderr
    assert "Traceback" not in stderr


def test_commands_that_ignore_signals_are_escalated_to_sigterm_then_sigkill(
    tree: Callable[[str], Path],
) -> None:
    folder = tree("--ignore=INT,TERM,HUP")
    process = launch(folder, "t", env={"HYDRAFLOW_GRACE_SECONDS": "1"})
    starts = wait_for_starts(folder, 1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    signals = [e["signal"] for e in tree_events(folder) if e["event"] == "signal"]
    assert signals == ["SIGINT", "SIGTERM"]  # then SIGKILL, which cannot be recorded
    assert not [pid for pid in processes_of(starts) if alive(pid)]
    assert "1 interrupted, 3 not started" in stderr


def test_a_second_signal_escalates_at_once(tree: Callable[[str], Path]) -> None:
    folder = tree("--ignore=INT,TERM,HUP")
    process = launch(folder, "t", env={"HYDRAFLOW_GRACE_SECONDS": "600"})
    starts = wait_for_starts(folder, 1)
    process.send_signal(signal.SIGINT)
    wait_for_signals(folder, 1)
    process.send_signal(signal.SIGINT)
    wait_for_signals(folder, 2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode == 130
    signals = [e["signal"] for e in tree_events(folder) if e["event"] == "signal"]
    assert signals == ["SIGINT", "SIGTERM"]
    assert not [pid for pid in processes_of(starts) if alive(pid)]


def wait_for_signals(folder: Path, count: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if len([e for e in tree_events(folder) if e["event"] == "signal"]) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} signals arrived: {tree_events(folder)}")


# A program that writes job events itself, as `@hydraflow.main` does (see
# README, "Executors"): the runner's reader, tested apart from the
# app. `o=OUTCOME,...` names each run's outcome; "silent" runs write nothing.
EVENTS_APP = """
import json, os, sys
path = os.environ["HYDRAFLOW_EVENTS"]
values = next(a for a in sys.argv if a.startswith("o="))[2:].split(",")
with open(path, "a") as out:
    for outcome in values:
        if outcome == "silent":
            continue
        run = {"pid": os.getpid(), "time": 1.0, "overrides": [f"o={outcome}"], "run_id": "r"}
        if outcome not in ("skipped", "busy"):
            start = {"event": "start", "resumed": outcome == "resumed", **run}
            out.write(json.dumps(start) + "\\n")
        out.write(json.dumps({"event": "end", "outcome": outcome, **run}) + "\\n")
    out.write('{"event": "end", "outco')  # a torn last line is never counted
"""


def events_project(project: Project, sweep: str) -> Path:
    folder = project(f"jobs:\n  e:\n    run: python events.py\n    sets:\n      - {sweep}\n")
    (folder / "events.py").write_text(EVENTS_APP)
    return folder


def test_the_summary_counts_runs_by_the_events_the_app_wrote(project: Project) -> None:
    folder = events_project(project, "each: o=finished,resumed|skipped,failed|killed,busy")
    result = run_cli("run", "e", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert (
        "hydraflow: e: 3 commands: 3 finished; 6 runs: 1 finished, 1 resumed, 1 skipped, "
        "1 failed, 1 killed, 1 busy; "
    ) in result.stderr
    assert not list(folder.glob(".hydraflow-events-*"))


def test_runs_no_event_reports_are_counted_as_not_reported(project: Project) -> None:
    folder = events_project(project, "all: o=finished,silent")
    result = run_cli("run", "e", cwd=folder)
    assert "e: 1 command: 1 finished; 2 runs: 1 finished, 1 not reported; " in result.stderr


def test_an_unknown_run_count_is_said_as_the_runs_came(project: Project) -> None:
    """Where only Hydra knows the count (a sweep function, a sweeper), the
    progress and the summary once said `?/? runs` and `? not reported`."""
    folder = events_project(project, "all: o=finished,silent o2=choice(1,2)")
    result = run_cli("run", "e", cwd=folder)
    assert "e: 1 command: 1 finished; runs: 1 finished; " in result.stderr
    assert "[1/1 command, 1 run, " in result.stderr
    assert "?" not in result.stderr.replace("ETA ?", "")


def test_call_jobs_get_an_events_file_per_command(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: tasks.report\n    sets:\n      - each: a=1,2\n")
    (folder / "tasks.py").write_text(
        "import json, os\n"
        "def report(args):\n"
        "    with open(os.environ['HYDRAFLOW_EVENTS'], 'a') as out:\n"
        "        out.write(json.dumps({'event': 'end', 'outcome': 'skipped'}) + '\\n')\n"
    )
    result = run_cli("run", "c", cwd=folder)
    assert "c: 2 commands: 2 finished; 2 runs: 2 skipped; " in result.stderr


@pytest.mark.slow
def test_the_tutorial_apps_report_their_runs(tutorial_store: Tutorial, tutorial_copy: Path) -> None:
    """End to end with `@hydraflow.main` writing events and its inputs
    manifest: a first run finishes every run; a second skips both commands
    without starting them; after the script changes, the commands start again
    and the app skips its finished configs; submit sums up the same way."""
    first = tutorial_store.first_stderr

    def hydraflow(job: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [HYDRAFLOW, "run", job],
            cwd=tutorial_copy,
            env=user_environment(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    sequential = "job_sequential: 2 commands: 2 finished; 6 runs: 6 finished; "
    assert sequential in first["job_sequential"]
    submit = "job_submit: 2 commands: 2 finished; 4 runs: 4 finished; "
    assert submit in first["job_submit"]
    submitted_again = hydraflow("job_submit")  # proven finished: no handler, no app starts
    assert "job_submit: 2 commands: 0 finished, 2 skipped; 4 runs: 4 skipped; " in (
        submitted_again.stderr
    )
    assert "submitting" not in submitted_again.stdout
    again = hydraflow("job_sequential")
    assert "job_sequential: 2 commands: 0 finished, 2 skipped; 6 runs: 6 skipped; " in again.stderr
    assert "command 1 skipped: it finished before" in again.stderr
    assert "Launching" not in again.stdout + again.stderr  # no app was started
    with (tutorial_copy / "example.py").open("a") as script:
        script.write("# changed\n")
    changed = hydraflow("job_sequential")
    assert "job_sequential: 2 commands: 2 finished; 6 runs: 6 skipped; " in changed.stderr


def test_a_call_job_stopped_by_sigterm_counts_it_interrupted(project: Project) -> None:
    folder = project("jobs:\n  c:\n    call: tasks.wait\n    sets:\n      - each: a=1,2\n")
    (folder / "tasks.py").write_text(
        "import time\ndef wait(args):\n    open('waiting', 'w').close()\n    time.sleep(300)\n"
    )
    process = launch(folder, "c")
    deadline = time.time() + 60
    while not (folder / "waiting").exists() and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "hydraflow: interrupted by SIGTERM; 1 command not started" in stderr
    assert "c: 2 commands: 0 finished, 1 interrupted, 1 not started; 2 runs:" in stderr
    assert "Traceback" not in stderr


def test_the_eta_has_a_basis_as_soon_as_one_run_ended() -> None:
    """Before any command ends, one run reported ended is enough for an ETA."""
    execution = Execution("j", total_commands=2, total_runs=10)
    assert execution.eta() is None
    execution.runs.ended["finished"] += 1
    eta = execution.eta()
    assert eta is not None and eta >= 0
    assert eta_text(eta).startswith("ETA ")
    unknown = Execution("j", total_commands=2, total_runs=None)
    unknown.runs.ended["finished"] += 1
    assert unknown.eta() is None  # no total to aim at until a command ends


def test_the_progress_bar_cuts_a_long_description_before_the_counts() -> None:
    import io

    from hydraflow.runner.executors.progress import TerminalReporter
    from hydraflow.runner.plan import Command
    from rich.console import Console

    execution = Execution("job_sequential", 2, 6)
    reporter = TerminalReporter(execution, prefix=False)
    reporter.progress.stop()
    params = ["--multirun", *(f"key{i}=value{i}" for i in range(20))]
    execution.command_started(Command(1, ("python", "app.py"), params, 3))
    reporter.console.width = 100
    reporter.refresh()
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(
        reporter.progress.make_tasks_table(reporter.progress.tasks)
    )
    [line] = out.getvalue().splitlines()
    assert line.startswith("job_sequential: command 1 key0=value0 key1=") and "…" in line
    assert line.rstrip().endswith("0/2 commands 0/6 runs 0:00:00 ETA ?")
