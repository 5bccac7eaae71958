"""A batch's first job is composed once (tracking/batches.py): what each job
gets is what `@hydra.main` gives it (the oracle), with one composition less
per batch, and Hydra is left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

APP = """
import json, os, sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
import {module}


@{decorator}
def app({parameters}):
    hydra = HydraConfig.get()
    sweep_dir = Path(hydra.sweep.dir)
    print(json.dumps({{
        "job": [hydra.job.num, hydra.job.id, hydra.job.override_dirname],
        "overrides": [list(hydra.overrides.task), list(hydra.overrides.hydra)],
        "sweep_dir_made_by_the_sweeper": (sweep_dir / "multirun.yaml").is_file(),
        "output_dir_in_sweep_dir": Path(hydra.runtime.output_dir).parent == sweep_dir.absolute(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }}), flush=True)


if __name__ == "__main__":
    app()
"""
FLOW = {
    "module": "hydraflow",
    "decorator": 'hydraflow.main(config_path="conf", config_name="config", version_base=None)',
    "parameters": "cfg",
}
HYDRA = {
    "module": "hydra",
    "decorator": 'hydra.main(config_path="conf", config_name="config", version_base=None)',
    "parameters": "cfg",
}
# The sweep directory is resolved once, as the sweep starts; the resolver's
# value is copied into each job's config (the first job's too).
CONFIG = """
width: 1
height: 2
name: ${width}x${height}
hydra:
  sweep:
    dir: out/${now:%H%M%S%f}
"""
ARGS = ["--multirun", "width=1,2,3"]
# Counts the compositions of a command, then runs it as `python app.py` would.
COUNTING = """
import runpy, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
load = ConfigLoaderImpl._load_configuration_impl
count = [0]
def counted(*args, **kwargs):
    count[0] += 1
    return load(*args, **kwargs)
ConfigLoaderImpl._load_configuration_impl = counted
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("compositions", count[0], file=sys.stderr)
"""


def project(root: Path, flavour: dict[str, str]) -> Path:
    root.mkdir()
    (root / "conf").mkdir()
    (root / "conf" / "config.yaml").write_text(CONFIG)
    (root / "app.py").write_text(APP.format(**flavour))
    return root


def jobs(folder: Path, *args: str) -> tuple[list[dict[str, object]], int]:
    """Each job's report, and the compositions of the command."""
    done = subprocess.run(
        [sys.executable, "-c", COUNTING, "app.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    compositions = int(done.stderr.rsplit("compositions ", 1)[1].split()[0])
    return reports, compositions


@pytest.mark.parametrize(
    ("batch_args", "batches"), [((), 1), (("hydra.sweeper.max_batch_size=2",), 2)]
)
def test_each_job_gets_what_hydra_main_composes_once_less_per_batch(
    tmp_path: Path, batch_args: tuple[str, ...], batches: int
) -> None:
    oracle, hydra_compositions = jobs(project(tmp_path / "hydra", HYDRA), *ARGS, *batch_args)
    ours, compositions = jobs(project(tmp_path / "flow", FLOW), *ARGS, *batch_args)
    assert len(oracle) == 3
    assert ours == oracle
    assert all(job["sweep_dir_made_by_the_sweeper"] for job in ours)
    assert compositions == hydra_compositions - batches


def test_hydra_is_left_as_it_was_after_the_app(launch_folder: Path) -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper
    from hydraflow.tracking.batches import first_job_composed_once

    load, validate = ConfigLoaderImpl.load_sweep_config, Sweeper.validate_batch_is_legal
    with first_job_composed_once():
        assert ConfigLoaderImpl.load_sweep_config is not load
        with first_job_composed_once():  # nested: the outer one stays
            inner = ConfigLoaderImpl.load_sweep_config
        assert ConfigLoaderImpl.load_sweep_config is inner
    assert ConfigLoaderImpl.load_sweep_config is load
    assert Sweeper.validate_batch_is_legal is validate
