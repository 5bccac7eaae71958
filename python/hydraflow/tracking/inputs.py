"""What a command's configs are made from, for the CLI to prove it finished.

When the CLI names a file in HYDRAFLOW_INPUTS, the app writes there, once per
process, the store it tracks to and a hash of every file its configs can
depend on: the script and the project's own modules (whatever is imported
from outside the Python installation), the config files Hydra searched, and
the versions of Hydra and OmegaConf. If none of them changed, the same
command line composes the same configs, so the CLI may skip a command whose
runs all finished without starting it. Configs that read the environment
(`oc.env`) are never proven: the environment is not a file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from hydraflow.protocol import INPUTS_ENV, file_digest, new_manifest

CONFIG_SUFFIXES = (".yaml", ".yml")

_written: set[str] = set()


def write_manifest(store_uri: str, config_dirs: list[Path]) -> None:
    """Writes the manifest once per process, if the CLI asked for one."""
    target = os.environ.get(INPUTS_ENV)
    if not target or target in _written:
        return
    _written.add(target)
    files = {str(path): file_digest(path) for path in sorted(input_files(config_dirs))}
    provable = not any(reads_environment(Path(path)) for path in files)
    manifest = new_manifest(store_uri, files, provable=provable)
    partial = Path(f"{target}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(manifest, sort_keys=True))
        partial.replace(target)  # atomic: parallel workers write the same content
    except OSError:
        # The CLI that asked is gone (a handler that did not wait returned,
        # and its directory went with it): the manifest is its, the run is the user's.
        with contextlib.suppress(OSError):
            partial.unlink()


def input_files(config_dirs: list[Path]) -> set[Path]:
    files = set(project_modules())
    for folder in config_dirs:
        files.update(p for p in folder.rglob("*") if p.suffix in CONFIG_SUFFIXES and p.is_file())
    return files


# The project file of each imported module by name (None when installed): a
# job looks only at the modules imported or removed since the last one.
_module_files: dict[str, Path | None] = {}


def project_modules() -> Iterator[Path]:
    """The files of imported modules that are not part of the installation."""
    modules = dict(sys.modules)
    for name in modules.keys() - _module_files.keys():
        _module_files[name] = module_project_file(modules[name])
    for name in _module_files.keys() - modules.keys():
        del _module_files[name]
    return iter([path for path in _module_files.values() if path is not None])


def classify_loaded_modules() -> None:
    """Classifies the modules loaded so far for the processes forked from
    this one (the warm server), all but `__main__`: it becomes each command's script."""
    project_modules()
    _module_files.pop("__main__", None)


def module_project_file(module: object) -> Path | None:
    file = getattr(module, "__file__", None)
    if file and isinstance(file, str) and file.endswith(".py"):
        return project_file(file)
    return None


@functools.cache
def project_file(file: str) -> Path | None:
    """The module file, resolved, unless it belongs to the installation
    (cached: each job asks again for the thousands of modules MLflow imports;
    most are seen to be installed by their path's text, without a system call)."""
    roots = installed_roots()
    if file.startswith(tuple(f"{root}{os.sep}" for root in roots)):
        return None
    path = Path(file).resolve()
    return None if any(path.is_relative_to(root) for root in roots) else path


@functools.cache
def installed_roots() -> tuple[str, ...]:
    """The installation's directories, as given and resolved."""
    paths = [p for p in sysconfig.get_paths().values() if p]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix]
    return tuple(sorted({str(Path(p)) for p in paths} | {str(Path(p).resolve()) for p in paths}))


def config_search_dirs() -> list[Path]:
    """The file directories of the running Hydra job's config search path."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    sources = HydraConfig.get().runtime.config_sources
    return [Path(s.path) for s in sources if s.schema == "file" and Path(s.path).is_dir()]


def reads_environment(path: Path) -> bool:
    if path.suffix not in CONFIG_SUFFIXES:
        return False
    try:
        return "oc.env" in path.read_text(errors="replace")
    except OSError:
        return True
