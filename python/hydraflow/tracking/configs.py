"""Configs between Hydra (DictConfig), the user's dataclass and MLflow."""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hydraflow.errors import HydraflowError, NotAMappingError
from hydraflow.tracking.identity import in_key_order

if TYPE_CHECKING:
    from hydraflow.tracking.secrets import Secrets

# The values OmegaConf holds as they are (besides None, an Enum and a Path).
PRIMITIVES = (bool, int, float, str, bytes)
# A schema's defaults list steers composition; it is not part of the config.
DEFAULTS_KEY = "defaults"


def is_structured(node: Any) -> bool:
    """A dataclass or an attrs class (or an instance of one): what Hydra
    and OmegaConf take as a structured config."""
    kind = node if isinstance(node, type) else type(node)
    return dataclasses.is_dataclass(node) or getattr(kind, "__attrs_attrs__", None) is not None


def as_omegaconf(config: Any) -> DictConfig:
    if isinstance(config, DictConfig):
        return config
    try:
        conf = OmegaConf.structured(config) if is_structured(config) else OmegaConf.create(config)
    except (ValueError, TypeError):
        raise NotAMappingError(config) from None
    if not isinstance(conf, DictConfig):
        raise NotAMappingError(config)
    return conf


def to_record(
    config: Any, secrets: Secrets | None = None, resolution: Any = None
) -> tuple[str, dict[str, Any]]:
    """The resolved config as sorted YAML (for the digest) and a plain dict
    (for params and the config tag), without a schema's defaults list, and
    with its `secrets` as they are recorded (never their values).
    `resolution` is the config already resolved (`resolve_watched`), used
    rather than resolving it again."""
    container = resolved(as_omegaconf(config)) if resolution is None else resolution
    if not isinstance(container, dict):
        raise NotAMappingError(config)
    if secrets:
        container = secrets.redact(container)
    plain = {str(key): recordable(value) for key, value in container.items() if key != DEFAULTS_KEY}
    return OmegaConf.to_yaml(OmegaConf.create(in_key_order(plain)), sort_keys=True), plain


def recordable(value: Any) -> Any:
    """A value as a config can hold it: a resolver may return any object
    (the app gets it as it is); a NumPy scalar is recorded as its Python
    value, another object as its text."""
    if isinstance(value, dict):
        return {key: recordable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [recordable(item) for item in value]
    if value is None or type(value) in PRIMITIVES or isinstance(value, Enum | Path):
        return value
    if type(value).__module__ == "numpy" and callable(getattr(value, "item", None)):
        item = value.item()  # a scalar's Python value (an array's is a list: its text)
        if type(item) in PRIMITIVES:
            return item
    return str(value)


def resolved(conf: DictConfig | ListConfig) -> Any:
    """The config as plain data, its interpolations resolved. One that cannot
    be resolved (a missing key, an unset `${oc.env:VAR}`) stays as written:
    Hydra runs an app that never reads it, and so must hydraflow."""
    from omegaconf.errors import InterpolationResolutionError

    try:
        return OmegaConf.to_container(conf, resolve=True)
    except InterpolationResolutionError:
        pass
    as_written = OmegaConf.to_container(conf, resolve=False)
    keys = conf.keys() if isinstance(conf, DictConfig) else range(len(conf))
    plain = {key: resolved_item(conf, key, as_written) for key in keys}
    return plain if isinstance(conf, DictConfig) else list(plain.values())


def resolved_item(conf: DictConfig | ListConfig, key: Any, as_written: Any) -> Any:
    from omegaconf.errors import InterpolationResolutionError

    if OmegaConf.is_missing(conf, key):
        return as_written[key]
    try:
        value = conf[key]
    except InterpolationResolutionError:
        return as_written[key]
    return resolved(value) if isinstance(value, DictConfig | ListConfig) else value


def typed(cfg: DictConfig, node: Any, resolution: Any = None) -> Any:
    """The config as the app expects it: an instance of the dataclass (or
    attrs class) it was declared with, or the DictConfig itself. The instance
    holds the values of `resolution` (the config resolved once, as recorded),
    not new ones."""
    from omegaconf.errors import OmegaConfBaseException

    if not is_structured(node):
        return cfg
    try:
        return OmegaConf.to_object(cfg if resolution is None else with_values(cfg, resolution))
    except OmegaConfBaseException as error:
        kind = node if isinstance(node, type) else type(node)
        message = omegaconf_reason(error)
        if unset_variable(error) is not None:  # the config fits; the environment lacks
            raise HydraflowError(message) from None
        raise HydraflowError(f"the config does not fit {kind.__qualname__}: {message}") from None


def with_values(cfg: DictConfig, resolution: Any) -> DictConfig:
    """A copy of `cfg` with each interpolation replaced by its resolved value,
    where the node takes it; the others (unresolved, a section, an object)
    are resolved by `to_object` as before."""
    import copy

    if not has_interpolation(cfg):
        return cfg  # nothing to put (and a copy costs)
    conf = copy.deepcopy(cfg)
    put_values(conf, resolution)
    return conf


def has_interpolation(conf: Any) -> bool:
    keys = conf.keys() if isinstance(conf, DictConfig) else range(len(conf))
    children = [conf._get_node(key) for key in keys]
    return any(
        child._is_interpolation() or (is_open_container(child) and has_interpolation(child))
        for child in children
        if child is not None
    )


def is_open_container(node: Any) -> bool:
    """A DictConfig or ListConfig with contents (not None, not `???`)."""
    return isinstance(node, DictConfig | ListConfig) and not (node._is_none() or node._is_missing())


def put_values(conf: Any, resolution: Any) -> None:  # a DictConfig or ListConfig
    from omegaconf.errors import OmegaConfBaseException

    keys = conf.keys() if isinstance(conf, DictConfig) else range(len(conf))
    for key in keys:
        child = conf._get_node(key)
        value = resolution[key]
        if child is None:
            continue
        if not child._is_interpolation():
            if is_open_container(child) and isinstance(value, dict | list):
                put_values(child, value)
            continue
        if isinstance(value, dict | list) or (isinstance(value, str) and "${" in value):
            continue  # a section, or text OmegaConf would take as an interpolation
        try:
            conf[key] = value
        except OmegaConfBaseException:
            continue  # read-only, or no primitive: `to_object` resolves it


def omegaconf_reason(error: Exception) -> str:
    """OmegaConf's reason on one line, led by the key it is about
    (`epochs: Value 'abc' of type 'str' could not be converted to Integer`);
    its own text adds `full_key:` and `object_type=` lines. An unset
    variable is said plainly (`api_key: the environment variable KEY is not
    set (${oc.env:KEY})`), not as the KeyError OmegaConf wraps."""
    message = str(getattr(error, "msg", None) or error).strip().splitlines()[0]
    key = getattr(error, "full_key", None)
    variable = unset_variable(error)
    if variable is not None:
        unset = f"the environment variable {variable} is not set (${{oc.env:{variable}}})"
        return f"{key}: {unset}" if key else unset
    return f"{key}: {message}" if key and key not in message else message


# What OmegaConf's `oc.env` resolver raises for a variable that is not set
# (wrapped in an InterpolationResolutionError): its text is all it keeps.
UNSET_VARIABLE = re.compile(
    r"KeyError raised while resolving interpolation: \"Environment variable '(.+)' not found\""
)


def unset_variable(error: Exception) -> str | None:
    """The variable `${oc.env:NAME}` needed and found unset, if that is the error."""
    from omegaconf.errors import InterpolationResolutionError

    if not isinstance(error, InterpolationResolutionError):
        return None
    found = UNSET_VARIABLE.match(str(getattr(error, "msg", None) or error))
    return found[1] if found else None


def save_yaml(container: dict[str, Any], path: Path) -> None:
    OmegaConf.save(OmegaConf.create(container), path)
