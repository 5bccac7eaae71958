"""No arguments at all: Hydra 1.1's defaults search the app's own folder
(`config_path="."`, with Hydra's warning) and no primary config is named."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main()


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
