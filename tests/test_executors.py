"""The executors with real subprocesses: sequential, parallel, failures,
interrupts, submit and call — through the installed `hydraflow` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import HYDRAFLOW, recorded, run_cli

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
    assert "j: 4 commands finished, 0 failed, 0 not started; 12 of 12 runs done" in result.stderr
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
    assert "1 commands finished, 1 failed, 2 not started" in result.stderr


def test_keep_going_runs_the_rest(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--fail-if b=y:3"))
    result = run_cli("run", "j", "--keep-going", cwd=folder)
    assert result.returncode == 3
    assert len(recorded(folder)) == 4
    assert "2 commands finished, 2 failed, 0 not started" in result.stderr


def test_missing_program_fails_clearly(project: Project) -> None:
    folder = project("jobs:\n  j:\n    run: no-such-program-here\n")
    result = run_cli("run", "j", cwd=folder)
    assert result.returncode == 127
    assert "could not start" in result.stderr
    assert "Traceback" not in result.stderr


def test_parallel_commands_overlap_and_prefix_output(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--sleep 0.5"))
    result = run_cli("run", "j", "-j", "4", cwd=folder)
    assert result.returncode == 0, result.stderr
    lines = (folder / "calls.jsonl").read_text().splitlines()
    starts = sorted(json.loads(line)["start"] for line in lines)
    # All four were running at once: each started before the first one ended.
    assert starts[-1] - starts[0] < 0.5
    prefixed = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert sorted(line.split("]")[0] for line in prefixed) == ["[1", "[2", "[3", "[4"]


def test_parallel_failure_starts_nothing_new(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--fail-if a=1:5"))
    result = run_cli("run", "j", "-j", "2", cwd=folder)
    assert result.returncode == 5
    assert len(recorded(folder)) == 2


def test_interrupt_reaches_every_child_and_exits_130(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--sleep 30"))
    process = subprocess.Popen(
        [HYDRAFLOW, "run", "j", "-j", "2"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children = wait_for_children(process.pid, 2)
    assert len(children) == 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted; 2 commands not started" in stderr
    assert not [pid for pid in children if alive(pid)]


def test_sigterm_is_handled_the_same_way(project: Project) -> None:
    folder = project(TWO_BY_TWO.format(flags="--sleep 30"))
    process = subprocess.Popen([HYDRAFLOW, "run", "j"], cwd=folder, stderr=subprocess.PIPE)
    children = wait_for_children(process.pid, 1)
    process.terminate()
    process.communicate(timeout=30)
    assert process.returncode == 130
    assert children
    assert not [pid for pid in children if alive(pid)]


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
    process = subprocess.Popen([HYDRAFLOW, "run", "s"], cwd=folder, stderr=subprocess.PIPE)
    wait_for_children(process.pid, 1)
    assert list(folder.glob("hydraflow-submit-*"))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130
    assert not list(folder.glob("hydraflow-submit-*"))
