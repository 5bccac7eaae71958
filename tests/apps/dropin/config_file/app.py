"""One config file beside the app, no groups."""

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf
from variant import main, record, run

decorate = main(version_base=None, config_path=".", config_name="service")


def serve(cfg: DictConfig) -> None:
    print(f"{cfg.get('workers', 1)} workers on {cfg.server.host}:{cfg.server.port}")
    print(OmegaConf.to_yaml(cfg))


@decorate
def app(cfg: DictConfig) -> None:
    serve(cfg)
    record(cfg)


@decorate
def app_with_run(run: Run, cfg: DictConfig) -> None:
    serve(cfg)
    record(cfg, run)


if __name__ == "__main__":
    run(app, app_with_run)
