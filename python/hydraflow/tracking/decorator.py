"""`@hydraflow.main`: every Hydra job of the decorated app becomes an MLflow run."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hydraflow.tracking.artifacts import chdir_artifact
from hydraflow.tracking.runs import JobContext, Options, look_up, tracked_run

if TYPE_CHECKING:
    from mlflow.entities import Run
    from omegaconf import DictConfig

C = TypeVar("C")
App = Callable[["Run", C], None]
DRY_RUN_FLAG = "--dry-run"

log = logging.getLogger("hydraflow")


def main(
    node: Any,
    config_name: str = "config",
    *,
    config_path: str | Path | None = None,
    tracking_uri: str | None = None,
    chdir: bool = False,
    force_new_run: bool = False,
    match_overrides: bool = False,
    rerun_finished: bool = False,
    dry_run: bool = False,
    update: Callable[[Any], Any] | None = None,
) -> Callable[[App[C]], Callable[[], None]]:
    """Runs the decorated `app(run, cfg)` through Hydra, one MLflow run per job.

    `node` (a dataclass, an instance or a dict) is registered in Hydra's
    ConfigStore as `config_name`; with `config_path`, YAML configs there layer
    over it. The experiment is Hydra's job name. A job whose config already
    has a FINISHED run is skipped; an unfinished run is resumed.
    """
    options = Options(tracking_uri, force_new_run, match_overrides, rerun_finished)

    def decorator(app: App[C]) -> Callable[[], None]:
        @functools.wraps(app)
        def run_with_hydra() -> None:
            import hydra
            from hydra.core.config_store import ConfigStore

            ConfigStore.instance().store(name=config_name, node=node)
            show_only = dry_run or take_flag(DRY_RUN_FLAG)

            # functools.wraps makes Hydra name the job and find `config_path`
            # from the user's script rather than from this module.
            @functools.wraps(app)
            def task(cfg: DictConfig) -> None:
                run_job(app, cfg, node, options, chdir=chdir, update=update, show_only=show_only)

            path = str(config_path) if config_path is not None else None
            hydra.main(config_path=path, config_name=config_name, version_base=None)(task)()

        return run_with_hydra

    return decorator


def take_flag(flag: str) -> bool:
    """Removes `flag` from the command line (Hydra would reject it)."""
    if flag in sys.argv[1:]:
        sys.argv.remove(flag)
        return True
    return False


def run_job(
    app: App[Any],
    cfg: DictConfig,
    node: Any,
    options: Options,
    *,
    chdir: bool,
    update: Callable[[Any], Any] | None,
    show_only: bool,
) -> None:
    from hydraflow.tracking.configs import save_yaml, to_yaml_and_container, typed

    config = typed(cfg, node)
    if update is not None:
        updated = update(config)
        config = config if updated is None else updated
    config_yaml, container = to_yaml_and_container(config)
    context = JobContext.current()
    if show_only:
        print(f"# {context.experiment}: {' '.join(context.overrides)}\n{config_yaml}", end="")
        return
    if update is not None and context.hydra_dir:
        save_yaml(config, context.hydra_dir / "config.yaml")
    lookup = look_up(context, config_yaml, options)
    if lookup.should_skip(options):
        assert lookup.existing is not None
        log.info("skipped: run %s already finished with this config", lookup.existing.info.run_id)
        return
    with tracked_run(lookup, context, container, options) as run:
        if chdir:
            with chdir_artifact(run):
                app(run, config)
        else:
            app(run, config)
