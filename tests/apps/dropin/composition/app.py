"""Two groups composed by a defaults list (the primary config overrides one
of their values), decorated positionally: `main(config_path, config_name,
version_base)`; swept with `-m`."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main("conf", "config", "1.3")


def export(cfg: DictConfig) -> None:
    print(f"batches of {cfg.batch} as {cfg.codec.format} to {cfg.storage.kind}")
    print(OmegaConf.to_yaml(cfg))


@decorate
def app(cfg: DictConfig) -> None:
    export(cfg)
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    export(cfg)
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)
