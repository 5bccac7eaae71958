"""The app under test: `@hydraflow.main`. With the case's schema it is
`app(run, cfg)`; without one it is the drop-in form, the oracle's own
decorator line and `app(cfg)`, its run found with `hydraflow.current_run()`."""

from __future__ import annotations

from typing import Any

import hydraflow
from case import CONFIG_NAME, CONFIG_PATH, SCHEMA, dump
from mlflow.entities import Run
from omegaconf import DictConfig

if SCHEMA is None:

    @hydraflow.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base=None)
    def app(cfg: DictConfig) -> None:
        dump(cfg, run_id=hydraflow.current_run().info.run_id)

else:

    @hydraflow.main(SCHEMA, CONFIG_NAME, config_path=CONFIG_PATH)
    def app(run: Run, cfg: Any) -> None:
        dump(cfg, run_id=run.info.run_id)


if __name__ == "__main__":
    app()
