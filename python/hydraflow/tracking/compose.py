"""Composition exactly as `@hydra.main` does it, with the app's schema on top.

Hydra composes the primary config from YAML when a file of that name is on
its search path. Registering the schema under the same name would turn on
Hydra's deprecated *automatic schema matching*, which makes the schema the
file's `_self_` and lets its defaults override the group choices. So the
schema is registered as the primary config only when no such file exists;
otherwise Hydra composes the YAML untouched and the schema validates the
result afterwards (types checked, missing keys filled from its defaults).
The schema is then also registered as `<config_name>_schema`, so a project
can put it first in its defaults list, the way Hydra documents for schemas,
and override keys the YAML does not mention.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hydraflow.errors import SchemaError

SCHEMA_SUFFIX = "_schema"
# A schema is the primary config, or validates it: it needs a name even
# where `@hydra.main` composes from an empty primary config.
SCHEMA_CONFIG_NAME = "config"


def prepare(
    app: Callable[..., Any], node: Any, config_path: str | None, config_name: str | None
) -> Callable[[DictConfig], DictConfig]:
    """Registers `node` where it cannot change Hydra's composition and returns
    what turns Hydra's composed config into the one the app is given."""
    if node is None:
        return lambda cfg: cfg
    from hydra.core.config_store import ConfigStore

    args = hydra_arguments()
    path = args.config_path or config_path
    name = args.config_name or config_name or SCHEMA_CONFIG_NAME
    config_dir = str(Path(args.config_dir).absolute()) if args.config_dir else None
    if primary_config_exists(app, path, name, config_dir):
        ConfigStore.instance().store(name=f"{name}{SCHEMA_SUFFIX}", node=node)
        return lambda cfg: validate(cfg, node)
    ConfigStore.instance().store(name=name, node=node)
    return lambda cfg: cfg


def hydra_arguments() -> argparse.Namespace:
    """Hydra's own options on the command line (`--config-path`, `--config-name`,
    `--config-dir`), which win over the decorator's, as in Hydra."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    return args


def primary_config_exists(
    app: Callable[..., Any], config_path: str | None, name: str, config_dir: str | None
) -> bool:
    """Whether Hydra would find a config file `name` for `app`, searching
    where `@hydra.main` searches (the same Hydra functions compute the path)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import (
        compute_search_path_dir,
        create_config_search_path,
        detect_calling_file_or_module_from_task_function,
    )

    calling_file, calling_module = detect_calling_file_or_module_from_task_function(app)
    search_dir = compute_search_path_dir(calling_file, calling_module, config_path)
    search_path = create_config_search_path(search_dir)
    if config_dir is not None:
        search_path.prepend("command-line", f"file://{config_dir}")
    return bool(ConfigRepository(search_path).config_exists(name))


def validate(cfg: DictConfig, node: Any) -> DictConfig:
    """`cfg` checked against the schema: values keep their place, types are
    converted or refused, keys the YAML leaves out take the schema's defaults."""
    from omegaconf.errors import OmegaConfBaseException

    schema = as_schema(node)
    try:
        merged = OmegaConf.merge(schema, cfg)
    except OmegaConfBaseException as error:
        # Imported here, as the job's other modules are: at the decorator's
        # import only what every app needs is loaded.
        from hydraflow.tracking.configs import omegaconf_reason

        reason = omegaconf_reason(error)
        raise SchemaError(f"the config does not fit {schema_name(node)}: {reason}") from None
    if not isinstance(merged, DictConfig):
        raise SchemaError(f"{schema_name(node)} must describe a mapping")
    return merged


def as_schema(node: Any) -> DictConfig:
    from hydraflow.tracking.configs import is_structured

    schema = OmegaConf.structured(node) if is_structured(node) else OmegaConf.create(node)
    if not isinstance(schema, DictConfig):
        raise SchemaError(f"{schema_name(node)} must describe a mapping, not a sequence")
    return schema


def schema_name(node: Any) -> str:
    kind = node if isinstance(node, type) else type(node)
    return f"the schema {kind.__qualname__}"
