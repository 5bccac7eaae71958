"""Warm starts against cold ones, the oracle: the same command started from
the warm interpreter and as a fresh `python` must print the same, end with
the same status, see the same argv, paths, environment and streams, run its
atexit handlers, and record the same runs; what cannot be the same starts
cold and says why. Real processes throughout."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydraflow.runner.executors.warm import (
    COLD_ENV,
    WarmInterpreter,
    WarmProcess,
    leading_imports,
)

from tests.conftest import HYDRAFLOW

APPS = Path(__file__).parent / "apps" / "warm"
PER_COMMAND = ("HYDRAFLOW_EVENTS", "HYDRAFLOW_INPUTS", "PROBE_UNCLOSED")
ENVIRONMENT = {
    **{k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", COLD_ENV)},
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class Ended:
    stdout: str
    stderr: str
    status: int


def finish(process: subprocess.Popen[bytes] | WarmProcess) -> Ended:
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        out, err = process.stdout.read(), process.stderr.read()
    return Ended(out.decode(), err.decode(), process.wait())


def cold(argv: Sequence[str], environment: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """As hydraflow starts a command cold."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=dict(environment),
    )


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmInterpreter]:
    """One warm interpreter for the module: its preload costs a cold start."""
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    yield interpreter
    interpreter.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The probe app and its own module in a fresh directory, the current one."""
    for name in ("probe.py", "helper.py"):
        shutil.copy(APPS / name, tmp_path / name)
    shutil.copytree(APPS / "probepkg", tmp_path / "probepkg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def environment(project: Path, name: str) -> dict[str, str]:
    """The environment hydraflow gives a command: its own events and inputs files."""
    return {
        **ENVIRONMENT,
        "HYDRAFLOW_EVENTS": str(project / f"{name}.events"),
        "HYDRAFLOW_INPUTS": str(project / f"{name}.inputs"),
        "PROBE_UNCLOSED": str(project / f"{name}.unclosed"),
    }


def both(warm: WarmInterpreter, project: Path, argv: Sequence[str]) -> tuple[Ended, Ended]:
    """The command started warm, then cold, each with the same environment."""
    env = environment(project, "warm")
    process = warm.start(argv, env, PER_COMMAND)
    assert process is not None, warm.refusals
    warm_end = finish(process)
    warm_unclosed = (project / "warm.unclosed").read_text() if "probe" in argv[1] else ""
    cold_end = finish(cold(argv, env))
    if "probe" in argv[1]:
        assert (project / "warm.unclosed").read_text() == warm_unclosed
    return warm_end, cold_end


MODES = ["return", "exit3", "exit-text", "raise", "interrupt", "sigterm", "syntax"]


@pytest.mark.parametrize("mode", MODES)
def test_a_warm_command_is_the_same_as_a_fresh_python(
    warm: WarmInterpreter, project: Path, mode: str
) -> None:
    warm_end, cold_end = both(warm, project, [sys.executable, "probe.py", mode, "x=1"])
    assert warm_end.status == cold_end.status
    assert warm_end.stderr == cold_end.stderr
    warm_lines, cold_lines = warm_end.stdout.splitlines(), cold_end.stdout.splitlines()
    warm_state, cold_state = json.loads(warm_lines[0]), json.loads(cold_lines[0])
    warm_environ, cold_environ = warm_state.pop("environ", {}), cold_state.pop("environ", {})
    differing = {
        k
        for k in warm_environ.keys() | cold_environ.keys()
        if warm_environ.get(k) != cold_environ.get(k)
    }
    assert {k: (warm_environ.get(k), cold_environ.get(k)) for k in differing} == {}
    assert warm_state == cold_state
    assert warm_lines[2:] == cold_lines[2:]  # the atexit handler's line, or none
    # Flushed as Python ends, unless a signal ended it (the same cold: `both`).
    flushed = "" if mode == "sigterm" else "written, never closed\n"
    assert (project / "warm.unclosed").read_text() == flushed


def test_the_exit_statuses_are_those_of_python(warm: WarmInterpreter, project: Path) -> None:
    statuses = {}
    for mode in ("return", "exit3", "raise", "interrupt", "sigterm"):
        process = warm.start(
            [sys.executable, "probe.py", mode], environment(project, "w"), PER_COMMAND
        )
        assert process is not None
        statuses[mode] = finish(process).status
    expected = {"return": 0, "exit3": 3, "raise": 1}
    expected |= {"interrupt": -signal.SIGINT, "sigterm": -signal.SIGTERM}
    assert statuses == expected


def test_each_command_has_its_own_random_seeds(warm: WarmInterpreter, project: Path) -> None:
    seen = []
    for _ in range(2):
        process = warm.start([sys.executable, "probe.py"], environment(project, "w"), PER_COMMAND)
        assert process is not None
        seen.append(finish(process).stdout.splitlines()[1])
    random_values = [json.loads(line) for line in seen]
    assert random_values[0][0] != random_values[1][0]  # random
    assert random_values[0][1] != random_values[1][1]  # numpy's global generator


def test_the_apps_own_module_is_imported_fresh_after_an_edit(
    warm: WarmInterpreter, project: Path
) -> None:
    values = []
    for text in ("VALUE = 1\n", "VALUE = 22\n"):
        (project / "helper.py").write_text(text)
        process = warm.start([sys.executable, "probe.py"], environment(project, "w"), PER_COMMAND)
        assert process is not None
        values.append(json.loads(finish(process).stdout.splitlines()[0])["helper"])
    assert values == [[1, False], [22, False]]


@pytest.mark.parametrize("extra", [[], ["raise"]])
def test_python_m_runs_the_module_as_a_fresh_python_does(
    warm: WarmInterpreter, project: Path, extra: list[str]
) -> None:
    (project / "probepkg" / "__main__.py").write_text(
        "import sys\nimport hydra\n" + (APPS / "probepkg" / "__main__.py").read_text()
    )
    warm_end, cold_end = both(warm, project, [sys.executable, "-m", "probepkg", *extra])
    assert warm_end == cold_end
    assert "module run as __main__ probepkg.__main__" in warm_end.stdout


def test_commands_at_once_are_forked_from_one_server_in_their_own_groups(
    warm: WarmInterpreter, project: Path
) -> None:
    """`-j N`: N children at once, each its own process group, signalled alone."""
    (project / "sleeper.py").write_text(
        "import time, hydra\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    processes = [
        warm.start([sys.executable, "sleeper.py"], environment(project, f"s{i}"), PER_COMMAND)
        for i in range(2)
    ]
    started = [p for p in processes if p is not None]
    assert len(started) == 2
    try:
        for process in started:
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
            assert os.getpgid(process.pid) == process.pid
        os.killpg(started[0].pid, signal.SIGTERM)
        assert started[0].wait() == -signal.SIGTERM
        os.killpg(started[1].pid, signal.SIGINT)  # Ctrl-C: KeyboardInterrupt in time.sleep
        ended = finish(started[1])
        assert ended.status == -signal.SIGINT
        assert ended.stderr.splitlines()[-1] == "KeyboardInterrupt"
        assert 'File "' + str(project / "sleeper.py") in ended.stderr
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            for pipe in (process.stdout, process.stderr):
                assert pipe is not None
                pipe.close()
            process.wait()


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["-c", "import hydra"], "interpreter options (-c)"),
        (["-u", "probe.py"], "interpreter options (-u)"),
        (["helper.py"], "'helper.py' imports none of Hydra"),
        (["missing.py"], "'missing.py' is not a Python source file"),
    ],
)
def test_what_a_warm_start_cannot_do_the_same_starts_cold(
    project: Path, argv: list[str], reason: str
) -> None:
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    assert (
        interpreter.start([sys.executable, *argv], environment(project, "w"), PER_COMMAND) is None
    )
    assert (
        interpreter.start([sys.executable, *argv], environment(project, "w"), PER_COMMAND) is None
    )
    assert len(notes) == 1  # said once
    assert notes[0].startswith(f"commands start cold: {reason}")
    assert interpreter.server is None  # nothing was started for it


def test_another_interpreter_or_program_starts_cold(project: Path) -> None:
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    other = shutil.which("python3", path="/usr/bin:/bin") or "/bin/sh"
    assert interpreter.start([other, "probe.py"], environment(project, "w"), PER_COMMAND) is None
    assert interpreter.start(["sh", "-c", "true"], environment(project, "w"), PER_COMMAND) is None
    assert notes == [
        f"commands start cold: '{other}' is not the interpreter hydraflow runs on",
        "commands start cold: 'sh' is not the interpreter hydraflow runs on",
    ]


def test_the_environment_variable_turns_warm_start_off(project: Path) -> None:
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    env = {**environment(project, "w"), COLD_ENV: "1"}
    assert interpreter.start([sys.executable, "probe.py"], env, ()) is None
    assert notes == [f"commands start cold: {COLD_ENV} is set"]


def broken_site(project: Path, sitecustomize: str) -> dict[str, str]:
    site = project / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(sitecustomize))
    return {**environment(project, "w"), "PYTHONPATH": str(site)}


@pytest.mark.parametrize(
    ("sitecustomize", "reason"),
    [
        (
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n",
            "threads before the preload (forking is unsafe then)",
        ),
        (
            "import sys\n"
            "class Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'omegaconf':\n"
            "            raise ImportError('omegaconf is broken here')\n"
            "sys.meta_path.insert(0, Refuse())\n",
            "preloading omegaconf failed (ImportError: omegaconf is broken here)",
        ),
    ],
)
def test_a_server_that_cannot_be_warm_falls_back_to_cold(
    project: Path, sitecustomize: str, reason: str
) -> None:
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    env = broken_site(project, sitecustomize)
    try:
        assert interpreter.start([sys.executable, "probe.py"], env, ()) is None
        assert interpreter.start([sys.executable, "probe.py"], env, ()) is None
    finally:
        interpreter.close()
    assert notes == [f"commands start cold: {reason}"]


def test_a_module_of_a_preloaded_name_beside_the_script_starts_cold(
    warm: WarmInterpreter, project: Path
) -> None:
    (project / "omegaconf.py").write_text("")
    process = warm.start([sys.executable, "probe.py"], environment(project, "w"), PER_COMMAND)
    assert process is None
    assert f"{project} has modules of the names it preloaded (omegaconf)" in warm.refusals[-1]


# --- the script's own leading imports ---------------------------------------------


def test_a_scripts_leading_imports_are_read_up_to_its_first_other_statement() -> None:
    source = b'''"""The app."""
from __future__ import annotations
import os, scipy.stats as st
from dataclasses import dataclass, field
import hydra
from . import sibling
import numpy
'''
    assert leading_imports(source) == (
        "os",
        "scipy.stats",
        "dataclasses",
        "dataclasses:dataclass",
        "dataclasses:field",
        "hydra",
    )
    assert leading_imports(b"import os\nos.environ['OMP_NUM_THREADS'] = '1'\nimport numpy\n") == (
        "os",
    )
    assert leading_imports(b"def broken(:\n") == ()


PRINTS = "print(scipy.stats.norm.cdf(0.0), sorted(sys.modules) == sorted(set(sys.modules)))\n"


@pytest.mark.parametrize(
    ("script", "imported"),
    [
        # An installed library the script imports first: preloaded with the server.
        ("import sys\nimport scipy.stats\nimport hydra\n", "scipy.stats"),
        # Not after a statement of the script's own (it may set what the library reads) ...
        ("import os, sys\nos.environ['X'] = '1'\nimport scipy.stats\nimport hydra\n", ""),
        # ... nor after a module of the user's own, which runs code too.
        ("import sys\nimport helper\nimport scipy.stats\nimport hydra\n", ""),
        # A library that prints as it loads: a fresh app shows that, so cold.
        ("import sys, this\nimport scipy.stats\nimport hydra\n", None),
    ],
)
def test_the_installed_libraries_a_script_imports_first_are_preloaded(
    project: Path, script: str, imported: str | None
) -> None:
    (project / "first.py").write_text(script + PRINTS)
    argv = [sys.executable, "first.py"]
    notes: list[str] = []
    interpreter = WarmInterpreter(notes.append)
    try:
        process = interpreter.start(argv, environment(project, "w"), PER_COMMAND)
        if imported is None:
            assert process is None
            assert notes == [
                "commands start cold: the script's imports print as they load "
                "(a fresh app shows it)"
            ]
            return
        assert process is not None, notes
        warm_end, cold_end = finish(process), finish(cold(argv, environment(project, "w")))
    finally:
        interpreter.close()
    assert notes[0].startswith("commands start from a warm interpreter (preloaded in ")
    assert notes[0].endswith(f" s, with the script's imports {imported})" if imported else " s)")
    assert warm_end == cold_end
    assert warm_end.stdout == "0.5 True\n"


# --- through `hydraflow run`, against --cold --------------------------------------

APP = """
import atexit, os, sys
import hydraflow

atexit.register(print, "atexit", flush=True)

@hydraflow.main({"a": 1, "b": 1})
def app(run, cfg):
    print("a", cfg.a, "b", cfg.b, "events", bool(os.environ.get("HYDRAFLOW_EVENTS")))
    if cfg.a == 3:
        raise SystemExit(4)

if __name__ == "__main__":
    app()
"""

JOBS = """
jobs:
  sweep:
    run: {python} app.py
    sets:
      - each: a=1,2
        all: b=1,2
  failing:
    run: {python} app.py
    sets:
      - each: a=3
"""


def hydraflow_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYDRAFLOW, "run", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        timeout=240,
    )


def recorded_runs(folder: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        rows = db.execute(
            "SELECT r.status, group_concat(p.key || '=' || p.value, ',') FROM runs r "
            "JOIN params p ON p.run_uuid = r.run_uuid GROUP BY r.run_uuid"
        ).fetchall()
    return sorted(rows)


def normalized(text: str) -> list[str]:
    """Lines without times, durations, ids and command numbers; without
    MLflow's notes on making the store and the progress lines (their order
    is the race of two commands at once)."""
    text = re.sub(r"^\[\d\] ", "", text, flags=re.M)
    text = re.sub(r"^.*(INFO +\[alembic|INFO mlflow|hydraflow: \[).*\n", "", text, flags=re.M)
    text = re.sub(r"\[\d{4}-\d\d-\d\d [\d:,]+\]", "[time]", text)
    text = re.sub(r"\d+\.\d+ s|\d+:\d\d|\b[0-9a-f]{32}\b|\b[0-9A-Z]{26}\b", "#", text)
    return sorted(line for line in text.splitlines() if "commands start" not in line)


def test_hydraflow_run_warm_records_what_cold_records(tmp_path: Path) -> None:
    results = {}
    for how in ("warm", "cold"):
        folder = tmp_path / how
        folder.mkdir()
        (folder / "app.py").write_text(textwrap.dedent(APP))
        (folder / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
        flags = ["-v"] if how == "warm" else ["--cold", "-v"]
        sweep = hydraflow_run(folder, "sweep", "-j", "2", *flags)
        failing = hydraflow_run(folder, "failing", *flags)
        results[how] = (sweep, failing, recorded_runs(folder))
    warm_sweep, warm_failing, warm_runs = results["warm"]
    cold_sweep, cold_failing, cold_runs = results["cold"]
    assert "commands start from a warm interpreter" in warm_sweep.stderr
    assert "commands start cold: --cold" in cold_sweep.stderr
    assert (warm_sweep.returncode, warm_failing.returncode) == (0, 4)
    assert (cold_sweep.returncode, cold_failing.returncode) == (0, 4)
    assert normalized(warm_sweep.stdout) == normalized(cold_sweep.stdout)
    assert normalized(warm_failing.stdout) == normalized(cold_failing.stdout)
    assert normalized(warm_sweep.stderr) == normalized(cold_sweep.stderr)
    assert normalized(warm_failing.stderr) == normalized(cold_failing.stderr)
    assert warm_runs == cold_runs
    assert len(warm_runs) == 5


def test_a_warm_commands_inputs_name_its_script_as_a_cold_ones_do(tmp_path: Path) -> None:
    """The finished proof: unchanged, both skip the commands; after an edit
    of the script, both start them again (the apps then skip their runs)."""
    summaries = {}
    for how, flags in (("warm", []), ("cold", ["--cold"])):
        folder = tmp_path / how
        folder.mkdir()
        (folder / "app.py").write_text(textwrap.dedent(APP))
        (folder / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
        first = hydraflow_run(folder, "sweep", *flags)
        again = hydraflow_run(folder, "sweep", *flags)
        with (folder / "app.py").open("a") as script:
            script.write("# changed\n")
        changed = hydraflow_run(folder, "sweep", *flags)
        summaries[how] = [
            run.stderr.splitlines()[-1].rsplit(";", 1)[0] for run in (first, again, changed)
        ]
    assert (
        summaries["warm"]
        == summaries["cold"]
        == [
            "hydraflow: sweep: 2 commands: 2 finished; 4 runs: 4 finished",
            "hydraflow: sweep: 2 commands: 0 finished, 2 skipped; 4 runs: 4 skipped",
            "hydraflow: sweep: 2 commands: 2 finished; 4 runs: 4 skipped",
        ]
    )


def test_hydraflow_run_without_v_says_nothing_of_warm_start(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
    started = time.monotonic()
    result = hydraflow_run(tmp_path, "sweep")
    assert result.returncode == 0, result.stderr
    assert "warm" not in result.stderr and "cold" not in result.stderr
    assert time.monotonic() - started < 120
