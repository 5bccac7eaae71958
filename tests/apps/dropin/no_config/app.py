"""No config file: the command line builds the config (`+server.port=80`)."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main(version_base=None)


@decorate
def app(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)
