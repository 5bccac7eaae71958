"""What a run ends as, and what Hydra gets back, at the edges of an app's
life: a config another process is running (a sweeper's duplicate trial), a
stopping signal the app catches, `sys.exit` inside the app, and a second
call of the app in one process. The oracle is the same app under plain
`@hydra.main` (only the decorator line differs) and MLflow's own reading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# The app, under `@hydraflow.main` or (DECORATOR=hydra) under `@hydra.main`.
# Each call of the app is a line of CALLS; it holds until RELEASE exists,
# fails once if FAIL_ONCE exists, exits with EXIT, or counts steps until a
# signal, which it catches, and returns.
APP = """
import os, sys, time
from pathlib import Path
import hydra, hydraflow

main = hydra.main if os.environ.get("DECORATOR") == "hydra" else hydraflow.main

@main(config_path=None, config_name=None, version_base=None)
def app(cfg):
    with open(os.environ["CALLS"], "a") as calls:
        calls.write(f"{os.getpid()}\\n")
    release = os.environ.get("RELEASE")
    while release and not Path(release).exists():
        time.sleep(0.05)
    fail_once = Path(os.environ.get("FAIL_ONCE", "no-such-file"))
    if fail_once.exists():
        fail_once.unlink()
        raise RuntimeError("failed once")
    if "EXIT" in os.environ:
        code = os.environ["EXIT"]
        sys.exit(None if code == "None" else int(code) if code.isdigit() else code)
    if "STEPS" in os.environ:
        step = 0
        print("counting", flush=True)
        try:
            for step in range(int(os.environ["STEPS"])):
                time.sleep(0.1)
        except KeyboardInterrupt:
            print(f"interrupted at step {step} - saving and returning", flush=True)
        return step
    return cfg.x * 2.5

if __name__ == "__main__":
    app()
"""

# Writes what Hydra got back from each job, as Hydra's own callback sees it.
CALLBACK = """
import json, os
from hydra.experimental.callback import Callback

class SaveReturn(Callback):
    def on_job_end(self, config, job_return, **kwargs):
        with open(os.environ["RETURNS"], "a") as out:
            out.write(json.dumps(repr(job_return._return_value)) + "\\n")
"""
SAVE_RETURN = "+hydra.callbacks.save._target_=callbacks.SaveReturn"


# The apps `start` started, each in its own group: killed after the test.
STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "callbacks.py").write_text(textwrap.dedent(CALLBACK))
    yield tmp_path
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()  # its pipes closed


# Set in this process by what it imported (MLflow, polars), not by a user.
NOT_USERS = ("MLFLOW_TRACKING_URI", "_RJEM_MALLOC_CONF")


def app_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_USERS}
    env.update(CALLS=str(folder / "calls"), RETURNS=str(folder / "returns"), **extra)
    return env


def start(folder: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    """The app in its own process group, its output piped."""
    process = subprocess.Popen(
        [sys.executable, "app.py", *args],
        cwd=folder,
        env=app_env(folder, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    STARTED.append(process)
    return process


def ended(process: subprocess.Popen[str]) -> int:
    """The process's exit status once it ends; its output shown if it is not 0."""
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        print(out, err)
    return process.returncode


def run_app(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=folder,
        env=app_env(folder, **extra),
        capture_output=True,
        text=True,
        timeout=240,
    )


def calls(folder: Path) -> list[str]:
    path = folder / "calls"
    return path.read_text().split() if path.exists() else []


def returns(folder: Path) -> list[str]:
    path = folder / "returns"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stored_runs(folder: Path) -> list[tuple[str, dict[str, str]]]:
    """(status, tags) of every run, as MLflow reads them."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [(run.info.status, run.data.tags) for run in client.search_runs(experiments)]


def waiting_in(process: subprocess.Popen[str], folder: Path) -> Callable[[], bool]:
    """Whether the process logged that it waits (Hydra's job log in outputs/)."""

    def waits() -> bool:
        assert process.poll() is None, "ended before it waited"
        return any("waiting for run" in log.read_text() for log in folder.glob("outputs/*/*/*.log"))

    return waits


def test_a_config_another_process_runs_waits_for_it_and_returns_its_value(folder: Path) -> None:
    first = start(folder, "+x=2", SAVE_RETURN, RELEASE=str(folder / "release"))
    wait_until(lambda: len(calls(folder)) == 1)
    second = start(folder, "+x=2", SAVE_RETURN)
    wait_until(waiting_in(second, folder))
    (folder / "release").touch()
    assert ended(first) == 0
    assert ended(second) == 0
    # Hydra got the app's value in both; the app ran once.
    assert returns(folder) == ["5.0", "5.0"]
    assert len(calls(folder)) == 1
    assert [status for status, _ in stored_runs(folder)] == ["FINISHED"]


@pytest.mark.parametrize("ending", ["fails", "is killed"])
def test_a_config_whose_other_run_fails_or_is_killed_is_run_after_it(
    folder: Path, ending: str
) -> None:
    """As Hydra would have run the duplicate, this process runs the config
    (resumes its run) once the other attempt has failed or died."""
    if ending == "fails":
        (folder / "fail").touch()
    first = start(folder, "+x=2", RELEASE=str(folder / "release"), FAIL_ONCE=str(folder / "fail"))
    wait_until(lambda: len(calls(folder)) == 1)
    second = start(folder, "+x=2", SAVE_RETURN)
    wait_until(waiting_in(second, folder))
    if ending == "fails":
        (folder / "release").touch()
        assert ended(first) == 1
    else:
        os.killpg(first.pid, signal.SIGKILL)
        ended(first)
    assert ended(second) == 0
    assert returns(folder) == ["5.0"]
    assert len(calls(folder)) == 2
    [(status, tags)] = stored_runs(folder)
    assert (status, tags["hydraflow.attempt"], tags["hydraflow.value"]) == ("FINISHED", "2", "5.0")


DUPLICATE_APP = """
import os, time
from pathlib import Path
import hydra, hydraflow
from hydra.core.hydra_config import HydraConfig

under_hydra = os.environ.get("DECORATOR") == "hydra"
main = hydra.main if under_hydra else hydraflow.main

@main(config_path=None, config_name=None, version_base=None)
def app(cfg):
    with open(os.environ["CALLS"], "a") as calls:
        calls.write(f"{os.getpid()}\\n")
    # Returns once the duplicate trial waits for this one (at most 120 s).
    sweep = Path(HydraConfig.get().sweep.dir)
    deadline = time.monotonic() + (0 if under_hydra else 120)
    while time.monotonic() < deadline:
        if any("waiting for run" in log.read_text() for log in sweep.glob("*/*.log")):
            break
        time.sleep(0.1)
    return float(cfg.x)

if __name__ == "__main__":
    app()
"""


@pytest.mark.timeout(400)
def test_optuna_duplicate_trials_on_joblib_both_get_the_value(folder: Path) -> None:
    """The reviewer's sweep: Optuna proposes x=1 twice at once, on two joblib
    workers; Hydra's sweeper gets 1.0 for both (it got None for the second)."""
    (folder / "app.py").write_text(textwrap.dedent(DUPLICATE_APP))
    sweep = (
        "-m",
        "hydra/sweeper=optuna",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "+x=choice(1)",
        SAVE_RETURN,
    )
    under_hydra = run_app(folder, *sweep, DECORATOR="hydra")
    assert under_hydra.returncode == 0, under_hydra.stderr
    assert returns(folder) == ["1.0", "1.0"]
    (folder / "returns").unlink()
    (folder / "calls").unlink()
    done = run_app(folder, *sweep)
    assert done.returncode == 0, done.stderr
    assert "Failed experiment" not in done.stderr + done.stdout
    assert returns(folder) == ["1.0", "1.0"]
    assert len(calls(folder)) == 1
    logs = "".join(log.read_text() for log in folder.glob("multirun/*/*/*/*.log"))
    assert "waiting for run" in logs
    assert [status for status, _ in stored_runs(folder)] == ["FINISHED"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stopping_signal_the_app_catches_still_ends_the_run_killed(
    folder: Path, signum: signal.Signals
) -> None:
    """The app catches the KeyboardInterrupt, saves and returns: its run ends
    KILLED (so the next launch resumes it) and the process exits 128+N, as
    Hydra's process dies of SIGTERM and SIGHUP (exit 143, 129 in a shell)."""
    for decorator in ("hydra", "hydraflow"):
        process = start(folder, "+x=1", STEPS="200", DECORATOR=decorator)
        assert process.stdout is not None
        assert process.stdout.readline() == "counting\n"
        time.sleep(0.5)
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
        if decorator == "hydra":
            if signum != signal.SIGINT:  # Hydra's process dies of the signal
                assert process.returncode == -signum
            continue
        assert process.returncode == 128 + signum, err
        assert "saving and returning" in out
        assert f"interrupted by {signum.name}; run " in err
        [(status, tags)] = stored_runs(folder)
        assert status == "KILLED"
        assert "hydraflow.value" not in tags
    resumed = run_app(folder, "+x=1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run" in resumed.stdout
    [(status, tags)] = stored_runs(folder)
    assert (status, tags["hydraflow.value"]) == ("FINISHED", "2.5")


@pytest.mark.parametrize(
    ("code", "status"),
    [("None", "FINISHED"), ("0", "FINISHED"), ("3", "FAILED"), ("bye", "FAILED")],
)
def test_sys_exit_in_the_app_ends_its_run_by_its_exit_status(
    folder: Path, code: str, status: str
) -> None:
    """`sys.exit()` and `sys.exit(0)` are a successful end (FINISHED, skipped
    next time); any other status is a failure. The exit status is Hydra's."""
    under_hydra = run_app(folder, "+x=1", EXIT=code, DECORATOR="hydra")
    first = run_app(folder, "+x=1", EXIT=code)
    assert first.returncode == under_hydra.returncode
    [(recorded, tags)] = stored_runs(folder)
    assert recorded == status
    assert "hydraflow.value" not in tags
    again = run_app(folder, "+x=1", EXIT=code)
    assert again.returncode == under_hydra.returncode
    assert ("already finished" in again.stdout) == (status == "FINISHED")
    assert len(calls(folder)) == (2 if status == "FINISHED" else 3)


SECOND_CALL = """
import os
import hydraflow

@hydraflow.main(config_path=None, config_name=None, version_base=None)
def my_app(cfg):
    pass

if __name__ == "__main__":
    os.chdir("A"); my_app(); os.chdir("../B"); my_app()
    left = ("MLFLOW_TRACKING_URI", "_RJEM_MALLOC_CONF")
    print({key: os.environ[key] for key in left if key in os.environ})
"""


@pytest.mark.parametrize("users_store", [False, True])
def test_a_second_call_records_where_it_is_launched_and_leaves_the_environment(
    folder: Path, users_store: bool
) -> None:
    """MLflow exports the store it is set to (MLFLOW_TRACKING_URI), polars
    its allocator's setting: neither is the user's choice, so the second
    call records in its own folder and the environment is left as it was.
    A store the user chose stays chosen for both."""
    (folder / "script.py").write_text(textwrap.dedent(SECOND_CALL))
    (folder / "A").mkdir()
    (folder / "B").mkdir()
    env = app_env(folder)
    users = f"sqlite:///{folder / 'users.db'}"
    if users_store:
        env["MLFLOW_TRACKING_URI"] = users
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    left = done.stdout.splitlines()[-1]
    if users_store:
        assert left == repr({"MLFLOW_TRACKING_URI": users})
        assert sorted(path.name for path in folder.glob("*/mlflow.db")) == []
        assert len(stored_runs_at(folder / "users.db")) == 1  # one config, skipped the second time
    else:
        assert left == "{}"
        assert len(stored_runs_at(folder / "A" / "mlflow.db")) == 1
        assert len(stored_runs_at(folder / "B" / "mlflow.db")) == 1


def stored_runs_at(path: Path) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [run.info.status for run in client.search_runs(experiments)]
