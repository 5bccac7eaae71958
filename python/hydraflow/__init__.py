"""hydraflow: run Hydra sweeps from a jobs file and track every run in MLflow.

The tracking half (`main`, `start_run`, ...) imports MLflow and Hydra, and
the analysis half (`load`, `Runs`, `Run`, `RunCollection`, ...) imports polars, so both are loaded
on first use: `import hydraflow` and the CLI stay fast. Even the Rust core and
`typing` wait: the CLI sets its signal handler first thing (`__main__`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hydraflow._core import (
        SweepSyntaxError,
        __version__,
        collect,
        count,
        expand,
        iter_expand,
    )
    from hydraflow.analysis import (
        Collection,
        Run,
        RunCollection,
        Runs,
        get_experiment_names,
        iter_artifact_paths,
        iter_artifacts_dirs,
        iter_experiment_dirs,
        iter_run_dirs,
        load,
    )
    from hydraflow.tracking.artifacts import chdir_artifact, get_artifact_dir
    from hydraflow.tracking.decorator import main
    from hydraflow.tracking.lifecycle import current_run, start_run
    from hydraflow.tracking.logrun import log_run
    from hydraflow.tracking.resume import is_resumed, last_step
    from hydraflow.tracking.stopping import MedianStopping, report

__all__ = [
    "Collection",
    "MedianStopping",
    "Run",
    "RunCollection",
    "Runs",
    "SweepSyntaxError",
    "__version__",
    "chdir_artifact",
    "collect",
    "count",
    "current_run",
    "expand",
    "get_artifact_dir",
    "get_experiment_names",
    "is_resumed",
    "iter_artifact_paths",
    "iter_artifacts_dirs",
    "iter_expand",
    "iter_experiment_dirs",
    "iter_run_dirs",
    "last_step",
    "load",
    "log_run",
    "main",
    "report",
    "start_run",
]

_LAZY = {
    **dict.fromkeys(
        ("SweepSyntaxError", "__version__", "collect", "count", "expand", "iter_expand"),
        "hydraflow._core",
    ),
    "load": "hydraflow.analysis",
    "Runs": "hydraflow.analysis",
    "Run": "hydraflow.analysis",
    **dict.fromkeys(
        (
            "Collection",
            "RunCollection",
            "get_experiment_names",
            "iter_artifact_paths",
            "iter_artifacts_dirs",
            "iter_experiment_dirs",
            "iter_run_dirs",
        ),
        "hydraflow.analysis",
    ),
    "main": "hydraflow.tracking.decorator",
    "start_run": "hydraflow.tracking.lifecycle",
    "current_run": "hydraflow.tracking.lifecycle",
    "log_run": "hydraflow.tracking.logrun",
    "get_artifact_dir": "hydraflow.tracking.artifacts",
    "chdir_artifact": "hydraflow.tracking.artifacts",
    "is_resumed": "hydraflow.tracking.resume",
    "last_step": "hydraflow.tracking.resume",
    "report": "hydraflow.tracking.stopping",
    "MedianStopping": "hydraflow.tracking.stopping",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hydraflow' has no attribute {name!r}")
