"""What the pattern apps are run with, chosen by run_patterns.py (or by
DROPIN_VARIANT when an app is run by hand with this folder on PYTHONPATH).

VARIANT "hydra" is the oracle: `main` is `hydra.main` and the app is
`app(cfg)`. "flow" runs the same `app(cfg)` under `hydraflow.main`, and
"flow_run" the app written `app_with_run(run, cfg)`. Each job appends a record
of what its app received to RECORDS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import hydraflow
import mlflow
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

VARIANTS = ("hydra", "flow", "flow_run")
VARIANT = os.environ.get("DROPIN_VARIANT", "flow")
RECORDS: list[dict[str, Any]] = []


def choose(variant: str) -> None:
    global VARIANT, main
    VARIANT = variant
    main = decorator_of(variant)


def decorator_of(variant: str) -> Any:
    return hydra.main if variant == "hydra" else hydraflow.main


main: Any = decorator_of(VARIANT)


def run(app: Callable[[], Any], app_with_run: Callable[[], Any]) -> None:
    (app_with_run if VARIANT == "flow_run" else app)()


def plain(cfg: DictConfig) -> Any:
    """Resolved; as written when some interpolation cannot be resolved."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError:
        return OmegaConf.to_container(cfg, resolve=False)


def record(cfg: DictConfig, run: Run | None = None) -> None:
    """What the app received, where it runs and, under hydraflow, its run."""
    hydra_config = HydraConfig.get()
    received: dict[str, Any] = {
        "config": plain(cfg),
        "type": type(cfg).__name__,
        "choices": {
            str(group): str(option)
            for group, option in hydra_config.runtime.choices.items()
            if option is not None and not str(group).startswith("hydra/")
        },
        "overrides": list(hydra_config.overrides.task),
        "in_output_dir": Path.cwd() == Path(hydra_config.runtime.output_dir),
    }
    if VARIANT != "hydra":
        current = hydraflow.current_run()
        active = mlflow.active_run()
        received["run_id"] = current.info.run_id
        received["same_run"] = (
            active is not None
            and active.info.run_id == current.info.run_id
            and (run is None or run.info.run_id == current.info.run_id)
        )
    RECORDS.append(received)
