"""Warm starts against cold ones and against the published hydraflow 0.23.2,
side by side in one run: the tutorial's `job_sequential`, the whole tutorial,
a 100-command sweep of a trivial app, and the memory of `-j 2`. Beside
`job_sequential`, the same sweep of the tutorial's app written for plain
`@hydra.main`, run warm: what a warm start costs with no tracking at all.

Run: python benches/bench_warm.py   (about 6 minutes on a quiet 2-core machine)

The published tool runs from the virtual environment named by
HYDRAFLOW_PUBLISHED_VENV (default: /work/published/.venv if it has Hydra's
joblib launcher, which the tutorial's `job_parallel` needs, else
~/.cache/hydraflow/published-0.23.2, made with `pip install hydraflow==0.23.2
hydra-joblib-launcher` under Python 3.13 when missing). Every job's runs are counted in its
store through the tool's own MLflow: a figure of a job that recorded fewer
runs than it should is refused. Each tool runs in a fresh copy of examples/ with its own
environment's `python` first on PATH, as a user's activated venv would; the
tools take turns in every round, so a change of the machine's load falls on
all of them. BENCH_ROUNDS (default 1) rounds; the best time of each is shown.
The load average is printed beside the figures.

The published tool needs Python 3.13; this project's venv may be another
version. HYDRAFLOW_BENCH_VENVS (venv paths joined by `:`, each with this
hydraflow installed, e.g. from `maturin build`'s wheel) adds a warm row per
venv, named by its Python version, so both tools can be compared on one
interpreter.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _common import hydraflow_app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TUTORIAL_FILES = ("example.py", "hydraflow.yaml", "submit.py")
TUTORIAL_JOBS = ("job_sequential", "job_parallel", "job_submit")
PUBLISHED_VERSION = "0.23.2"
PUBLISHED_PACKAGES = (f"hydraflow=={PUBLISHED_VERSION}", "hydra-joblib-launcher")
TUTORIAL_RUNS = {"job_sequential": 6, "job_parallel": 6, "job_submit": 4}
# Counts the finished runs of one experiment, as MLflow reads the store the
# app wrote to (the default tracking URI of that MLflow, in that folder).
COUNT_RUNS = """
import sys, mlflow
runs = mlflow.search_runs(experiment_names=[sys.argv[1]], filter_string="status = 'FINISHED'")
print(len(runs))
"""
PYTHON_VERSION = "import sys; print(*sys.version_info[:2], sep='.')"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
# The CPU seconds of each tool's last `hydraflow run`, with all it started
# (reaped processes count to their waiting parent): a figure the machine's
# load disturbs far less than wall time.
CPU: dict[str, float] = {}

# A trivial app: one run per command, nothing to compute. Written for both
# tools' `hydraflow.main` (a dataclass config, `app(run, cfg)`).
TRIVIAL_APP = hydraflow_app(
    "x", body='time.sleep(float(os.environ.get("APP_SLEEP", "0")))', imports="import os, time"
)

# The tutorial's app under plain `@hydra.main`: the same config, sweep and
# imports, nothing recorded. Run warm by hydraflow, it is the floor of a
# warm `job_sequential`: one preload and Hydra's own work in each command.
PLAIN_HYDRA_APP = """
import logging, math
from dataclasses import dataclass

import hydra
import mlflow
from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)


@dataclass
class Config:
    width: int = 1024
    height: int = 768


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base=None, config_name="config")
def app(cfg: Config) -> None:
    log.info(cfg)
    log.info(abs(math.log(cfg.width / cfg.height)))


if __name__ == "__main__":
    app()
"""

SWEEP_JOBS = """
jobs:
  sweep:
    run: python app.py
    sets:
      - each: x=1:{count}
"""


@dataclass(frozen=True)
class Tool:
    name: str
    venv: Path
    extra: tuple[str, ...] = ()  # options of `hydraflow run`
    env: tuple[tuple[str, str], ...] = ()

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NO_COLOR")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python writes its caches
        env.pop("HYDRAFLOW_COLD", None)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.env)
        return env

    def runs(self, folder: Path, experiment: str) -> int:
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", COUNT_RUNS, experiment],
            cwd=folder,
            env=self.environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        return int(result.stdout.split()[-1])

    def run(self, folder: Path, job: str, *args: str, runs: int | None = None) -> float:
        """Wall seconds of `hydraflow run JOB`; fails loudly if the job fails
        or records fewer finished runs than `runs` (the time would be a lie).
        The CPU seconds of it and everything it started are kept in `cpu`."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            [str(self.venv / "bin" / "hydraflow"), "run", job, *args, *self.extra],
            cwd=folder,
            env=self.environment(),
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        CPU[self.name] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(f"{self.name}: {job} failed:\n{result.stderr[-3000:]}")
        if runs is not None and (recorded := self.runs(folder, job)) < runs:
            tail = result.stderr[-3000:]
            raise SystemExit(f"{self.name}: {job} recorded {recorded} runs, not {runs}:\n{tail}")
        return took


def usable(venv: Path) -> bool:
    """The published hydraflow with Hydra's joblib launcher."""
    python = venv / "bin" / "python"
    check = "import hydraflow, hydra_plugins.hydra_joblib_launcher"
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", check], stderr=subprocess.DEVNULL).returncode == 0


def published_venv() -> Path:
    """The published tool's venv: found, or made once with pip."""
    named = os.environ.get("HYDRAFLOW_PUBLISHED_VENV")
    venv = Path(named) if named else Path("/work/published/.venv")
    if named is None and not usable(venv):
        venv = Path.home() / ".cache" / "hydraflow" / f"published-{PUBLISHED_VERSION}"
    if not usable(venv):
        print(f"making {venv} with {' '.join(PUBLISHED_PACKAGES)} ...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python_for_published(), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *PUBLISHED_PACKAGES], check=True)
    return venv


def python_for_published() -> str:
    """An interpreter the published tool installs on (it requires Python 3.13):
    HYDRAFLOW_PUBLISHED_PYTHON, else pyenv's 3.13, else python3.13 on PATH (a
    pyenv shim there may name a version that is not active)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [str(p) for p in sorted(pyenv.glob("3.13*/bin/python"))]
    named = os.environ.get("HYDRAFLOW_PUBLISHED_PYTHON")
    for python in [named, *found[-1:], shutil.which("python3.13")]:
        if python and subprocess.run([python, "-V"], capture_output=True).returncode == 0:
            return python
    sys.exit(
        "bench_warm: the published hydraflow needs Python 3.13: set HYDRAFLOW_PUBLISHED_PYTHON"
    )


def tutorial_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file in TUTORIAL_FILES:
        shutil.copy(EXAMPLES / file, folder / file)
    return folder


def sweep_folder(root: Path, name: str, count: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(TRIVIAL_APP)
    (folder / "hydraflow.yaml").write_text(SWEEP_JOBS.format(count=count))
    return folder


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def best_of(rounds: int, measure: Callable[[int], dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for round_number in range(rounds):
        for key, value in measure(round_number).items():
            best[key] = min(best.get(key, value), value)
    return best


def bench_tutorial(tools: list[Tool], root: Path) -> None:
    """`job_sequential` alone, then the whole tutorial (each job's time too)."""

    def measure(round_number: int) -> dict[str, float]:
        times = {}
        for tool in tools:
            folder = tutorial_folder(root, f"seq-{tool.name}-{round_number}")
            times[f"{tool.name} job_sequential"] = tool.run(folder, "job_sequential", runs=6)
            times[f"{tool.name} job_sequential cpu"] = CPU[tool.name]
        warm = next(tool for tool in tools if tool.name == "warm")
        folder = tutorial_folder(root, f"seq-plain-{round_number}")
        (folder / "example.py").write_text(PLAIN_HYDRA_APP)
        times["plain job_sequential"] = warm.run(folder, "job_sequential")
        for tool in tools:
            folder = tutorial_folder(root, f"tutorial-{tool.name}-{round_number}")
            total = cpu = 0.0
            for job in TUTORIAL_JOBS:
                took = tool.run(folder, job, runs=TUTORIAL_RUNS[job])
                times[f"{tool.name} tutorial {job}"] = took
                times[f"{tool.name} tutorial {job} cpu"] = CPU[tool.name]
                total += took
                cpu += CPU[tool.name]
            times[f"{tool.name} tutorial"] = total
            times[f"{tool.name} tutorial cpu"] = cpu
        return times

    print(f"\n## The tutorial ({load()} before)")
    times = best_of(ROUNDS, measure)
    published = tools[0].name
    for what in ("job_sequential", "tutorial"):
        for tool in tools:
            took, cpu = times[f"{tool.name} {what}"], times[f"{tool.name} {what} cpu"]
            ratio = took / times[f"{published} {what}"]
            cpu_ratio = cpu / times[f"{published} {what} cpu"]
            print(
                f"{what:16} {tool.name:10} {took:6.1f} s wall {ratio:5.2f}x {published}, "
                f"{cpu:6.1f} s CPU {cpu_ratio:5.2f}x"
            )
    plain = times["plain job_sequential"]
    print(
        f"job_sequential of a plain @hydra.main app, warm (nothing recorded: the floor) "
        f"{plain:6.1f} s wall {plain / times[f'{published} job_sequential']:5.2f}x {published}"
    )
    for job in TUTORIAL_JOBS:
        row = "  ".join(
            f"{t.name} {times[f'{t.name} tutorial {job}']:5.1f} s "
            f"({times[f'{t.name} tutorial {job} cpu']:5.1f} s CPU)"
            for t in tools
        )
        print(f"  {job:14} {row}")
    print(f"({load()} after)")


def bench_sweep(tools: list[Tool], root: Path) -> None:
    """Per-command wall time of a sweep of a trivial app at -j 1: 100
    commands warm; 10 for the cold starts (at seconds each)."""

    def measure(round_number: int) -> dict[str, float]:
        times = {}
        for tool in tools:
            count = 100 if tool.name.startswith("warm") else 10
            folder = sweep_folder(root, f"sweep-{tool.name}-{round_number}", count)
            times[f"{tool.name} {count}"] = tool.run(folder, "sweep", runs=count) / count
            times[f"{tool.name} {count} cpu"] = CPU[tool.name] / count
        return times

    print(f"\n## A sweep of a trivial app, -j 1 ({load()} before)")
    times = best_of(ROUNDS, measure)
    for key, per_command in sorted(times.items()):
        if key.endswith(" cpu"):
            continue
        tool, count = key.split()
        cpu = times[f"{key} cpu"]
        print(
            f"{tool:10} {count:>3} commands: {per_command:5.2f} s wall, {cpu:5.2f} s CPU"
            " per command"
        )
    print(f"({load()} after)")


def tree_memory(root_pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of a process and all its descendants, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    rss = pss = 0.0
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return rss, pss


def peak_memory(tool: Tool, folder: Path) -> tuple[float, float, float]:
    """Wall seconds and the peak RSS and PSS (MB) of `hydraflow run sweep -j 2`
    with everything it starts, sampled every 50 ms."""
    env = {**tool.environment(), "APP_SLEEP": "2"}
    command = [str(tool.venv / "bin" / "hydraflow"), "run", "sweep", "-j", "2", *tool.extra]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peaks = [0.0, 0.0]

    def sample() -> None:
        while process.poll() is None:
            rss, pss = tree_memory(process.pid)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], pss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    status = process.wait()
    sampler.join()
    if status != 0:
        raise SystemExit(f"{tool.name}: the -j 2 sweep failed")
    return time.perf_counter() - start, peaks[0], peaks[1]


def bench_memory(tools: list[Tool], root: Path) -> None:
    print(f"\n## Memory at -j 2: 6 commands of an app that sleeps 2 s ({load()} before)")
    for tool in tools:
        folder = sweep_folder(root, f"memory-{tool.name}", 6)
        took, rss, pss = peak_memory(tool, folder)
        print(f"{tool.name:10} peak RSS {rss:6.0f} MB, peak PSS {pss:6.0f} MB  ({took:.1f} s)")
    print("(RSS counts a shared page once per process; PSS divides it among them)")


def other_venvs() -> list[Tool]:
    """Warm rows for the venvs named in HYDRAFLOW_BENCH_VENVS."""
    tools = []
    for named in filter(None, os.environ.get("HYDRAFLOW_BENCH_VENVS", "").split(os.pathsep)):
        venv = Path(named)
        version = subprocess.run(
            [str(venv / "bin" / "python"), "-c", PYTHON_VERSION],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tools.append(Tool(f"warm-{version}", venv))
    return tools


def main() -> None:
    ours = Path(sys.executable).parent.parent
    tools = [
        Tool("published", published_venv()),
        Tool("cold", ours, env=(("HYDRAFLOW_COLD", "1"),)),  # --cold is for run jobs only
        Tool("warm", ours),
        *other_venvs(),
    ]
    print(f"# hydraflow warm start: {os.cpu_count()} CPUs, {load()}")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        bench_tutorial(tools, root)
        bench_sweep(tools, root)
        bench_memory(tools[1:3], root)


if __name__ == "__main__":
    main()
