"""A team store: @hydraflow.main against a real MLflow tracking server on
PostgreSQL (tests/services.py), from local runs, SLURM array tasks and
concurrent writers, with MLflow's own client as the oracle."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.services import (
    APP,
    SlurmCluster,
    TrackingServer,
    slurm,
    slurm_cluster,
    tracking_server,
)

pytestmark = pytest.mark.slow  # real Hydra apps, sweeps or services

__all__ = ["slurm", "slurm_cluster", "tracking_server"]  # the fixtures this module uses

EXAMPLES = Path(__file__).parent.parent / "examples"
TUTORIAL = {"job_sequential": 6, "job_parallel": 6, "job_submit": 4}
BIN = str(Path(sys.executable).parent)


def environment(server: TrackingServer, cluster: SlurmCluster | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if cluster is not None:
        env["SLURM_CONF"] = str(cluster.conf)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = server.uri
    return env


def hydraflow(
    server: TrackingServer, folder: Path, *args: str, cluster: SlurmCluster | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["hydraflow", *args],
        cwd=folder,
        env=environment(server, cluster),
        capture_output=True,
        text=True,
        timeout=900,
    )


def server_runs(server: TrackingServer, experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(server.uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return list(client.search_runs([found.experiment_id], max_results=1000))


def artifact_text(server: TrackingServer, run: mlflow.entities.Run, path: str) -> str:
    """An artifact read back through the server's artifact proxy."""
    client = mlflow.MlflowClient(server.uri)
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run.info.run_id, path, folder)).read_text()


def stored_on_server(server: TrackingServer, run: mlflow.entities.Run, path: str) -> Path:
    """Where the server keeps a run's artifact: under --artifacts-destination."""
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    relative = run.info.artifact_uri.removeprefix("mlflow-artifacts:/").lstrip("/")
    return server.artifacts / relative / path


def test_the_tutorial_against_the_server(tracking_server: TrackingServer, tmp_path: Path) -> None:
    for name in ("example.py", "hydraflow.yaml", "submit.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)

    for job in TUTORIAL:
        result = hydraflow(tracking_server, tmp_path, "run", job)
        assert result.returncode == 0, result.stdout + result.stderr

    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    for job, expected in TUTORIAL.items():
        runs = server_runs(tracking_server, job)
        assert len(runs) == expected, job
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert len({r.data.tags["hydraflow.digest"] for r in runs}) == expected
        for run in runs:
            config = yaml.safe_load(artifact_text(tracking_server, run, ".hydra/config.yaml"))
            assert {k: str(v) for k, v in config.items()} == run.data.params
            assert stored_on_server(tracking_server, run, ".hydra/config.yaml").is_file()
            assert "Config(width=" in artifact_text(tracking_server, run, f"{job}.log")

    for job, expected in TUTORIAL.items():
        again = hydraflow(tracking_server, tmp_path, "run", job)
        assert again.returncode == 0, again.stdout + again.stderr
        output = again.stdout + again.stderr
        assert output.count("already finished with this config") == expected, job
        assert len(server_runs(tracking_server, job)) == expected


def test_slurm_array_tasks_write_to_the_server(
    slurm: SlurmCluster, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """The cluster setup: tasks on the nodes, one store behind a server. A
    failed run is resumed under its id on the next pass, logs of both kept."""
    submit = "hydraflow slurm --max-parallel 2 -- python app.py"
    jobs = {"on_server": {"submit": submit, "sets": [{"each": "i=0,1,2", "all": "j=0,1"}]}}
    (tmp_path / "hydraflow.yaml").write_text(yaml.safe_dump({"jobs": jobs}))
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "fail-1").touch()

    first = hydraflow(tracking_server, tmp_path, "run", "on_server", cluster=slurm)

    assert first.returncode == 1, first.stdout + first.stderr
    assert "task 2 FAILED" in first.stderr
    statuses = Counter(r.info.status for r in server_runs(tracking_server, "on_server"))
    assert statuses == {"FINISHED": 4, "FAILED": 2}
    failed = {
        r.info.run_id
        for r in server_runs(tracking_server, "on_server")
        if r.info.status == "FAILED"
    }

    (tmp_path / "fail-1").unlink()
    second = hydraflow(tracking_server, tmp_path, "run", "on_server", cluster=slurm)

    assert second.returncode == 0, second.stdout + second.stderr
    runs = server_runs(tracking_server, "on_server")
    assert len(runs) == 6
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {(r.data.params["i"], r.data.params["j"]) for r in runs} == {
        (str(i), str(j)) for i in range(3) for j in range(2)
    }
    assert failed <= {r.info.run_id for r in runs}
    for run in (r for r in runs if r.info.run_id in failed):
        log = artifact_text(tracking_server, run, "on_server.log")
        assert log.count(f"i=1 j={run.data.params['j']} in task 2") == 2
    assert not (tmp_path / "mlflow.db").exists()


WRITERS, RUNS_PER_WRITER = 4, 6
MACHINES = 6


def test_concurrent_writers_lose_and_duplicate_nothing(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """Four launch directories, as on four machines, write 6 runs each to
    one experiment at once. The experiment exists beforehand: creating it
    at once from several machines is the next test's race."""
    mlflow.MlflowClient(tracking_server.uri).create_experiment("writers")
    processes = []
    for writer in range(WRITERS):
        folder = tmp_path / f"machine{writer}"
        folder.mkdir()
        (folder / "app.py").write_text(APP)
        argv = [sys.executable, "app.py", "--multirun", f"i=range(0,{RUNS_PER_WRITER})"]
        argv += [f"j={writer}", "hydra.job.name=writers"]
        processes.append(
            subprocess.Popen(
                argv,
                cwd=folder,
                env=environment(tracking_server),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=900)[0] for process in processes]

    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    runs = server_runs(tracking_server, "writers")
    assert len(runs) == WRITERS * RUNS_PER_WRITER
    assert {r.info.status for r in runs} == {"FINISHED"}
    configs = {(r.data.params["i"], r.data.params["j"]) for r in runs}
    assert len(configs) == WRITERS * RUNS_PER_WRITER
    assert len({r.data.tags["hydraflow.digest"] for r in runs}) == WRITERS * RUNS_PER_WRITER


def open_experiment_at_once(uri: str, name: str, folder: str, barrier: Barrier, out: Queue) -> None:
    """In a fresh process: hydraflow's experiment lookup-or-create, started
    together with the others; puts the id (or the error) on `out`."""
    from hydraflow.store import open_new_experiment

    barrier.wait()
    try:
        out.put(open_new_experiment(uri, name, Path(folder))[1])
    except Exception as error:
        out.put(f"error: {error}")


def test_machines_creating_one_experiment_at_once_all_get_it(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(MACHINES), context.Queue()
    processes = []
    for machine in range(MACHINES):
        folder = tmp_path / f"machine{machine}"
        folder.mkdir()
        args = (tracking_server.uri, "created_at_once", str(folder), barrier, out)
        processes.append(context.Process(target=open_experiment_at_once, args=args))
    for process in processes:
        process.start()
    ids = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    experiment = mlflow.MlflowClient(tracking_server.uri).get_experiment_by_name("created_at_once")
    assert experiment is not None
    assert ids == [experiment.experiment_id] * MACHINES


def test_the_ui_url_of_a_server_never_holds_its_password(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """The URL is printed and kept in the browser's history: the user and
    password given in the tracking URI stay out of it (the browser asks)."""
    experiment = mlflow.MlflowClient(tracking_server.uri).create_experiment("ui_password")
    host = tracking_server.uri.removeprefix("http://")
    with_password = f"http://alice:hunter2secret@{host}"
    shown = subprocess.run(
        ["hydraflow", "ui", "ui_password", "--no-browser", "--tracking-uri", with_password],
        cwd=tmp_path,
        env=environment(tracking_server, None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "hunter2secret" not in shown.stdout + shown.stderr
    assert shown.stdout.startswith(f"{tracking_server.uri}/#/experiments/{experiment}/runs?")
