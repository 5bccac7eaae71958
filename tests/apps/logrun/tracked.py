"""The app of app.py as `@hydraflow.main` runs it: the oracle of what a run
recorded by `log_run` holds."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hydraflow
import mlflow

log = logging.getLogger(__name__)


@dataclass
class Config:
    width: int = 3
    name: str = "x"
    token: str = "${oc.env:LOGRUN_TOKEN,unset}"


@hydraflow.main(Config)
def app(cfg: Config) -> None:
    log.info("the token is %s", cfg.token)
    mlflow.log_metric("area", cfg.width * 2)
    if cfg.width < 0:
        raise ValueError("a negative width")


if __name__ == "__main__":
    app()
