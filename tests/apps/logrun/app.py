"""An app under plain `@hydra.main` that starts its MLflow run itself and
records it with `hydraflow.log_run`, as the published HydraFlow's users
write it; the same file runs with the published package and with this one.

Its token is read from the environment (a secret); it logs it, and a
negative width makes it fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


if __name__ == "__main__":
    app()
