"""A config group and no primary config (no `config_name`): the config is
empty until the command line picks an option (`+storage=s3`)."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main(version_base=None, config_path="conf")


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
