"""An app under plain `@hydra.main` that starts its MLflow run itself and
records it with `hydraflow.log_run`, as the published HydraFlow's users
write it; the same file runs with the published package and with this one.

Its token is read from the environment (a secret); it logs it, and a
negative width makes it fail. Told LOGRUN_STARTED (a file), it writes its
run id there and waits to be interrupted.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import mlflow
from hydra.core.config_store import ConfigStore
from hydraflow import log_run

log = logging.getLogger(__name__)


@dataclass
class Config:
    width: int = 3
    name: str = "x"
    token: str = "${oc.env:LOGRUN_TOKEN,unset}"


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base=None, config_name="config")
def app(cfg: Config) -> None:
    mlflow.set_experiment("logrun")
    with mlflow.start_run() as run, log_run(run):
        log.info("the token is %s", cfg.token)
        mlflow.log_metric("area", cfg.width * 2)
        if cfg.width < 0:
            raise ValueError("a negative width")
        if "LOGRUN_STARTED" in os.environ:
            Path(os.environ["LOGRUN_STARTED"]).write_text(run.info.run_id)
            time.sleep(120)


if __name__ == "__main__":
    app()
