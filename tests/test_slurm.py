"""`hydraflow slurm` and Hydra's submitit launcher on a real single-node SLURM
cluster (tests/services.py), with scontrol as the oracle for what ran."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.services import APP, SlurmCluster, slurm, slurm_cluster, wait_until

__all__ = ["slurm", "slurm_cluster"]  # the fixtures this module uses

EXAMPLES = Path(__file__).parent.parent / "examples"
BIN = str(Path(sys.executable).parent)


def environment(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if k not in ("MLFLOW_TRACKING_URI", "NO_COLOR")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def hydraflow(
    cluster: SlurmCluster, folder: Path, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["hydraflow", *args],
        cwd=folder,
        env=environment(cluster, **extra),
        capture_output=True,
        text=True,
        timeout=900,
    )


def write_project(folder: Path, jobs: dict[str, object]) -> Path:
    (folder / "hydraflow.yaml").write_text(yaml.safe_dump({"jobs": jobs}, sort_keys=False))
    (folder / "app.py").write_text(APP)
    return folder


def runs_of(folder: Path, experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return list(client.search_runs([found.experiment_id], max_results=1000))


def experiment_names(folder: Path) -> set[str]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return {e.name for e in client.search_experiments()} - {"Default"}


def job_id(output: str) -> str:
    found = re.search(r"submitted job (\d+)", output)
    assert found, output
    return found.group(1)


def scontrol_tasks(cluster: SlurmCluster, job: str) -> dict[int, dict[str, str]]:
    """Each array task's fields as `scontrol show job` gives them: the oracle."""
    result = cluster.command("scontrol", "--oneliner", "show", "job", job)
    assert result.returncode == 0, result.stderr
    tasks = {}
    for line in result.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        # 4294967294 stands for tasks cancelled before they started.
        if fields.get("ArrayTaskId", "").isdigit() and fields["ArrayTaskId"] != "4294967294":
            tasks[int(fields["ArrayTaskId"])] = fields
    return tasks


def array_folder(folder: Path) -> Path:
    [found] = (folder / "multirun").glob("slurm-*")
    return found


@pytest.mark.slow
def test_tutorial_job_submit_through_the_slurm_handler(slurm: SlurmCluster, tmp_path: Path) -> None:
    jobs = yaml.safe_load((EXAMPLES / "hydraflow.yaml").read_text())["jobs"]
    job_submit = jobs["job_submit"]
    job_submit["submit"] = "hydraflow slurm --max-parallel 2 -- python example.py"
    (tmp_path / "hydraflow.yaml").write_text(yaml.safe_dump({"jobs": {"job_submit": job_submit}}))
    shutil.copy(EXAMPLES / "example.py", tmp_path)

    result = hydraflow(slurm, tmp_path, "run", "job_submit")

    assert result.returncode == 0, result.stdout + result.stderr
    tasks = scontrol_tasks(slurm, job_id(result.stdout))
    assert sorted(tasks) == [1, 2]
    assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"}
    assert {t["ArrayTaskThrottle"] for t in tasks.values()} == {"2"}
    assert {t["JobName"] for t in tasks.values()} == {"job_submit"}
    assert "all 2 tasks completed" in result.stderr
    assert experiment_names(tmp_path) == {"job_submit"}
    runs = runs_of(tmp_path, "job_submit")
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    sizes = {(r.data.params["width"], r.data.params["height"]) for r in runs}
    assert sizes == {("250", "150"), ("250", "250"), ("350", "150"), ("350", "250")}
    logs = array_folder(tmp_path)
    for task, fields in tasks.items():
        assert fields["StdOut"] == str(logs / f"task-{task}.out")
        assert fields["StdErr"] == str(logs / f"task-{task}.err")
        assert "[INFO]" in (logs / f"task-{task}.out").read_text()


@pytest.mark.slow
def test_a_job_as_a_throttled_array(slurm: SlurmCluster, tmp_path: Path) -> None:
    """3 tasks of 2 runs with at most one task at a time, below the cluster's
    CPUs, so that the throttle, not the node, keeps the tasks apart."""
    submit = "hydraflow slurm --max-parallel 1 -- python app.py"
    project = write_project(
        tmp_path, {"six": {"submit": submit, "sets": [{"each": "i=0:2", "all": "j=0:1"}]}}
    )
    assert slurm.cpus >= 2

    result = hydraflow(slurm, project, "run", "six")

    assert result.returncode == 0, result.stdout + result.stderr
    tasks = scontrol_tasks(slurm, job_id(result.stdout))
    assert sorted(tasks) == [1, 2, 3]
    assert {t["ArrayTaskThrottle"] for t in tasks.values()} == {"1"}
    assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"}
    runs = runs_of(project, "six")
    assert len(runs) == 6
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({(r.data.params["i"], r.data.params["j"]) for r in runs}) == 6
    stamps = [json.loads(line) for line in (project / "stamps.jsonl").read_text().splitlines()]
    spans = sorted(
        (min(s["start"] for s in group), max(s["end"] for s in group))
        for task in {s["task"] for s in stamps}
        for group in [[s for s in stamps if s["task"] == task]]
    )
    assert len(spans) == 3
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))


@pytest.mark.slow
def test_a_failing_task_is_named_with_its_log(slurm: SlurmCluster, tmp_path: Path) -> None:
    submit = "hydraflow slurm -- python app.py"
    sets = [{"each": "i=0,1,2"}]
    project = write_project(tmp_path, {"failing": {"submit": submit, "sets": sets}})
    (project / "fail-1").touch()

    result = hydraflow(slurm, project, "run", "failing")

    assert result.returncode == 1, result.stdout + result.stderr
    tasks = scontrol_tasks(slurm, job_id(result.stdout))
    assert {n: t["JobState"] for n, t in tasks.items()} == {
        1: "COMPLETED",
        2: "FAILED",
        3: "COMPLETED",
    }
    assert tasks[2]["ExitCode"] == "1:0"
    log = array_folder(project) / "task-2.err"
    assert "1 of 3 tasks failed" in result.stderr
    assert f"task 2 FAILED (exit code 1): {log}" in result.stderr
    assert "i=1 fails on purpose" in log.read_text()
    statuses = {r.data.params["i"]: r.info.status for r in runs_of(project, "failing")}
    assert statuses == {"0": "FINISHED", "1": "FAILED", "2": "FINISHED"}


def wait_for(condition: object, what: str, seconds: float = 300) -> None:
    """A bound on a hang, not a timing assertion."""
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_cancels_the_array_and_leaves_no_run_running(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    submit = "hydraflow slurm -- python app.py"
    sets = [{"each": "i=0,1,2,3", "all": "j=0,1"}]
    project = write_project(tmp_path, {"held": {"submit": submit, "sets": sets}})
    (project / "hold").touch()
    process = subprocess.Popen(
        ["hydraflow", "run", "held"],
        cwd=project,
        env=environment(slurm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Both CPUs busy: two tasks are inside their first run, two pending.
        wait_for(lambda: len(list(project.glob("started-*"))) == slurm.cpus, "running tasks")
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert process.returncode == 130, stdout + stderr
    assert "cancelling job" in stderr
    tasks = scontrol_tasks(slurm, job_id(stdout))
    # The two running tasks got SIGINT: their apps ended their runs KILLED and
    # exited 130, as a shell reports Ctrl-C. The two pending never started, and
    # scontrol keeps them as one record without a task id.
    assert sorted(tasks) == [1, 2], tasks
    assert {(t["JobState"], t["ExitCode"]) for t in tasks.values()} == {("FAILED", "130:0")}
    assert "task 3 CANCELLED" in stderr
    assert "task 4 CANCELLED" in stderr
    assert not slurm.queue()
    interrupted = runs_of(project, "held")
    assert sorted(r.info.status for r in interrupted) == ["KILLED"] * slurm.cpus

    (project / "hold").unlink()
    again = hydraflow(slurm, project, "run", "held")

    assert again.returncode == 0, again.stdout + again.stderr
    runs = runs_of(project, "held")
    assert len(runs) == 8
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.info.run_id for r in interrupted} <= {r.info.run_id for r in runs}


@pytest.mark.slow
def test_sbatch_refusing_and_no_wait(slurm: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("--multirun a=1\n--multirun a=2\n")
    program = ["--", "true", "params.txt"]

    refused = hydraflow(slurm, tmp_path, "slurm", "--partition", "nowhere", *program)

    assert refused.returncode == 1
    assert "Error: sbatch failed (status 1): sbatch: error: invalid partition" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not list((tmp_path / "multirun").glob("*"))

    submitted = hydraflow(slurm, tmp_path, "slurm", "--no-wait", *program)

    assert submitted.returncode == 0, submitted.stderr
    job = job_id(submitted.stdout)
    wait_for(lambda: not slurm.queue(), "the array to finish")
    tasks = scontrol_tasks(slurm, job)
    assert {n: t["JobState"] for n, t in tasks.items()} == {1: "COMPLETED", 2: "COMPLETED"}


@pytest.mark.slow
def test_a_job_that_does_not_wait_runs_every_config(slurm: SlurmCluster, tmp_path: Path) -> None:
    """`--no-wait`: hydraflow run returns (and removes its events directory)
    while the tasks run; every Hydra job of every task still makes its run."""
    submit = "hydraflow slurm --no-wait -- python app.py"
    sets = [{"each": "i=0,1,2", "all": "j=0,1"}]
    project = write_project(tmp_path, {"nowait": {"submit": submit, "sets": sets}})

    result = hydraflow(slurm, project, "run", "nowait")

    assert result.returncode == 0, result.stdout + result.stderr
    job = job_id(result.stdout)
    assert "nowait: 3 commands: 3 submitted, not waited for; 6 runs: 6 not waited for" in (
        result.stderr
    )
    assert f"the handler submitted 3 commands (job {job}) and returned without waiting" in (
        result.stderr
    )
    assert "does the handler wait" not in result.stderr
    wait_for(lambda: not slurm.queue(), "the array to finish")
    tasks = scontrol_tasks(slurm, job)
    assert {n: t["JobState"] for n, t in tasks.items()} == dict.fromkeys((1, 2, 3), "COMPLETED")
    runs = runs_of(project, "nowait")
    assert sorted((r.data.params["i"], r.data.params["j"]) for r in runs) == [
        (i, j) for i in "012" for j in "01"
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    logs = array_folder(project)
    assert not any("Traceback" in (logs / f"task-{n}.err").read_text() for n in tasks)
    assert not list(project.glob(".hydraflow-events-*"))


def test_the_handler_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("")
    cases = {
        ("--", "python", "app.py", "params.txt"): "no lines, so no array tasks",
        ("--", "python", "missing.txt"): "parameter file missing.txt: No such file",
        ("--array=1-3", "--", "python", "params.txt"): "sets --array, --output, --error",
        ("-o", "x.log", "--", "python", "params.txt"): "sets --array, --output, --error",
        ("--partition", "debug"): "expected `-- PROGRAM [ARGS]... PARAMETER_FILE`",
        ("--max-parallel", "0", "--", "python", "params.txt"): "0 is not in the range x>=1",
    }
    for args, message in cases.items():
        result = subprocess.run(
            [f"{BIN}/hydraflow", "slurm", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "multirun").exists()


def prefixes(option: str) -> list[str]:
    """`--array`, `--arra`, ... `--a`: what getopt_long might take for it."""
    return [option[:n] for n in range(len(option), 2, -1)]


RESERVED = ("--array", "--output", "--error", "--parsable", "--wait")
# Short options sbatch reads in a bundle (-Ho x.log is -H -o x.log), each with its value.
BUNDLES = (("-Ho", "x.log"), ("-Qa", "1"), ("-vW",), ("-sOe", "y.log"), ("-a1",), ("-ox.log",))
# Words in which a reserved letter or name is another option's value.
NOT_RESERVED = ("-pa", "-Jo", "-ka", "-te", "-J", "--partition=array", "--ntasks=2")


def refusal(tmp_path: Path, option: str) -> subprocess.CompletedProcess[str]:
    argv = [f"{BIN}/hydraflow", "slurm", "--dry-run", option, "--", "true", "params.txt"]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_every_prefix_sbatch_takes_for_a_reserved_option_is_refused(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    """sbatch (--test-only: it parses, asks the controller, submits nothing)
    is the oracle for which abbreviations and bundles it takes."""
    (tmp_path / "params.txt").write_text("a=1\n")
    (tmp_path / "script.sh").write_text("#!/bin/bash\ntrue\n")
    cases: list[tuple[str, ...]] = [
        (f"{prefix}=1",) if option != "--parsable" else (prefix,)
        for option in RESERVED[:-1]
        for prefix in prefixes(option)
    ]
    cases += [(prefix,) for prefix in prefixes("--wait")[1:]]  # --wait is hydraflow slurm's
    refused = 0
    for case in [*cases, *BUNDLES]:
        sbatch = slurm.command("sbatch", "--test-only", *case, str(tmp_path / "script.sh"))
        ours = refusal(tmp_path, case[0])
        taken = sbatch.returncode == 0
        assert ours.returncode == (2 if taken else 0), (case, sbatch.stderr, ours.stderr)
        refused += taken
    assert refused == 4 + 5 + 4 + 5 + len(BUNDLES)  # --ar.. --ou.. --er.. --pars..
    assert not (tmp_path / "multirun").exists()


def test_abbreviated_and_bundled_reserved_options_are_refused(tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("a=1\n")
    refused = [
        "--ar=1-3",
        "--arr=1-3",
        "--arra",
        "--ou=x.log",
        "--out",
        "--er=y",
        "--err",
        "--pars",
        "--parsab",
        *(bundle[0] for bundle in BUNDLES),
    ]
    for word in refused:
        result = refusal(tmp_path, word)
        assert result.returncode == 2, (word, result.stderr)
        assert "hydraflow slurm sets --array, --output, --error" in result.stderr, word
    assert "(sbatch reads --array)" in refusal(tmp_path, "--arr=1-3").stderr
    assert "(sbatch reads -o)" in refusal(tmp_path, "-Ho").stderr
    for word in ["--a=1", "--par", "--wai", "--partition=debug", *NOT_RESERVED]:
        result = refusal(tmp_path, word)
        assert result.returncode == 0, (word, result.stderr)
    assert not (tmp_path / "multirun").exists()


def test_dry_run_prints_the_sbatch_command_and_script(tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("--multirun a=1 hydra.job.name=j\n--multirun 'a=x y'\n")
    args = ["--partition", "debug", "--time=00:10:00", "--max-parallel", "3", "--dry-run"]
    result = subprocess.run(
        [f"{BIN}/hydraflow", "slurm", *args, "--", "python", "app.py", "params.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    command, *script = result.stdout.splitlines()
    argv = command.split()
    assert argv[:3] == ["sbatch", "--parsable", "--array=1-2%3"]
    assert argv[3] == "--job-name=j"
    assert argv[6:9] == ["--partition", "debug", "--time=00:10:00"]
    assert argv[-1].endswith("/array.sh")
    assert script[0] == "#!/bin/bash"
    assert script[-3] == "program=(python app.py)"
    assert script[-1] == 'eval "exec \\"\\${program[@]}\\" $line"'
    assert not (tmp_path / "multirun").exists()


def test_the_script_runs_each_line_with_its_quoting(tmp_path: Path) -> None:
    """The array script's body, run by bash as SLURM would for each task."""
    from hydraflow.runner.slurm import ArrayJob

    lines = ("--multirun 'a=x y' b=1", "--multirun \"c='q'\" '$HOME'")
    printer = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    job = ArrayJob(tuple(printer), lines, tmp_path / "array")
    job.write()
    seen = []
    for task in (1, 2):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}
        result = subprocess.run(
            ["bash", str(job.script_path)], env=env, capture_output=True, text=True, check=True
        )
        seen.append(json.loads(result.stdout))
    assert seen == [["--multirun", "a=x y", "b=1"], ["--multirun", "c='q'", "$HOME"]]


# What bash would expand or split if it saw them unquoted, or in double quotes.
AWKWARD = (
    "+note=${model.name}",
    "$HOME",
    "`id`",
    "$(id)",
    "it's",
    'say "hi"',
    "back\\slash\\",
    "two  spaces",
    "new\nline",
    "!x",
    "*",
    "",
)


def test_the_programs_arguments_reach_it_as_given(tmp_path: Path) -> None:
    """The `submit:` line's arguments after the program, as the task's argv:
    `$`, backquotes, quotes, backslashes and spaces are the program's, not bash's."""
    from hydraflow.runner.slurm import ArrayJob

    printer = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    lines = ("--multirun seed=1,2 '$x'", "# a line that is only a comment")
    job = ArrayJob((*printer, *AWKWARD), lines, tmp_path / "array")
    job.write()
    seen = []
    for task in (1, 2):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "x": "X"}
        result = subprocess.run(
            ["bash", str(job.script_path)], env=env, capture_output=True, text=True, check=True
        )
        seen.append(json.loads(result.stdout))
    assert seen == [[*AWKWARD, "--multirun", "seed=1,2", "$x"], list(AWKWARD)]


@pytest.mark.slow
def test_a_task_gets_the_programs_arguments_as_given(slurm: SlurmCluster, tmp_path: Path) -> None:
    """On the cluster: `'+note=${model.name}'` failed every task (bash's "bad
    substitution"), and `$HOME` became the node's home."""
    (tmp_path / "params.txt").write_text("--multirun seed=1,2\n")
    printer = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]

    result = hydraflow(slurm, tmp_path, "slurm", "--", *printer, *AWKWARD, "params.txt")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 1 tasks completed" in result.stderr
    output = (array_folder(tmp_path) / "task-1.out").read_text()
    assert json.loads(output) == [*AWKWARD, "--multirun", "seed=1,2"]


@pytest.mark.slow
def test_the_submitit_launcher_runs_job_sequential(slurm: SlurmCluster, tmp_path: Path) -> None:
    jobs = yaml.safe_load((EXAMPLES / "hydraflow.yaml").read_text())["jobs"]
    job_sequential = jobs["job_sequential"]
    job_sequential["add"] = "hydra/launcher=submitit_slurm hydra.launcher.timeout_min=10"
    (tmp_path / "hydraflow.yaml").write_text(
        yaml.safe_dump({"jobs": {"job_sequential": job_sequential}})
    )
    shutil.copy(EXAMPLES / "example.py", tmp_path)

    result = hydraflow(slurm, tmp_path, "run", "job_sequential")

    assert result.returncode == 0, result.stdout + result.stderr
    submitted = list(tmp_path.glob("multirun/*/.submitit/*/*_submission.sh"))
    assert len(submitted) == 2  # one array of 3 jobs per command
    for script in submitted:
        # submitit hands back the results as soon as the jobs wrote them; SLURM
        # marks a job COMPLETED only once its step has ended, a moment later.
        def ended(array: str = script.parent.name) -> bool:
            states = {t["JobState"] for t in scontrol_tasks(slurm, array).values()}
            return not states & {"PENDING", "RUNNING", "COMPLETING"}

        wait_until(ended, f"array {script.parent.name} to end")
        tasks = scontrol_tasks(slurm, script.parent.name)
        assert {n: t["JobState"] for n, t in tasks.items()} == dict.fromkeys(range(3), "COMPLETED")
    assert experiment_names(tmp_path) == {"job_sequential"}
    runs = runs_of(tmp_path, "job_sequential")
    assert len(runs) == 6
    assert {r.info.status for r in runs} == {"FINISHED"}
    sizes = {(r.data.params["width"], r.data.params["height"]) for r in runs}
    assert sizes == {(w, h) for w in ("100", "300") for h in ("100", "200", "300")}
