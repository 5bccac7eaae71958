"""No `version_base`: Hydra 1.1's defaults, with Hydra's warning, and the job
runs inside its output directory."""

import os

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main(config_path="conf", config_name="config")


def write(cfg: DictConfig) -> None:
    with open(cfg.out, "w") as out:
        out.write(OmegaConf.to_yaml(cfg))
    print(cfg.out, "written in the output directory:", os.path.exists(".hydra"))


@decorate
def app(cfg: DictConfig) -> None:
    write(cfg)
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    write(cfg)
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)
