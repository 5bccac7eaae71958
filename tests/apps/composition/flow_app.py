"""The app under test: `@hydraflow.main`, with the schema when the case has
one, else in the drop-in form `@hydraflow.main(config_path=..., config_name=...)`."""

from __future__ import annotations

from typing import Any

import hydraflow
from case import CONFIG_NAME, CONFIG_PATH, SCHEMA, dump
from mlflow.entities import Run

if SCHEMA is None:
    decorate = hydraflow.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME)
else:
    decorate = hydraflow.main(SCHEMA, CONFIG_NAME, config_path=CONFIG_PATH)


@decorate
def app(run: Run, cfg: Any) -> None:
    dump(cfg, run_id=run.info.run_id)


if __name__ == "__main__":
    app()
