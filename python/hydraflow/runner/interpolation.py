"""`${...}` in the jobs file, resolved as the published HydraFlow resolves it.

The published tool reads `hydraflow.yaml` with OmegaConf, over a schema whose
every field defaults to `''`, so a jobs file may borrow from itself
(`run: ${jobs.base.run}`, `add: ${jobs.base.add} lr=0.5`, relative `${.add}`)
and from the environment (`${oc.env:W,7}`); `\\${x}` is the literal `${x}`,
which is how a `${...}` meant for Hydra (`\\${hydra:job.num}`) gets there.

One difference, so that a secret is never written out: `${oc.env:...}` in
`each`, `all` and `add` goes on to Hydra as written (the published tool put
its value on the command line). The app resolves it, so it gets the same
value, and its run records the interpolation's text rather than the value,
as for an `oc.env` in the app's own config. Elsewhere (`run`, `name`, ...)
it is resolved.

Only the job that holds a `${...}` that cannot be resolved fails (one line,
with its place and line); the file's other jobs still work. OmegaConf is
imported only for a file holding `${`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hydraflow.errors import ConfigError
from hydraflow.runner.jobs_yaml import INTERPOLATION_DEPTH, Path, dotted

if TYPE_CHECKING:
    from omegaconf import Container

# The published schema's fields and defaults: `${jobs.base.add}` is '' when
# the job `base` has no `add`.
JOB_DEFAULTS: dict[str, Any] = {"name": "", "run": "", "call": "", "submit": "", "add": ""}
SET_DEFAULTS: dict[str, Any] = {"each": "", "all": "", "add": ""}
# The schema's string fields: a number an interpolation gives there is its text.
STRING_FIELDS = frozenset({*JOB_DEFAULTS, *SET_DEFAULTS})

ESCAPE_HINT = r"to pass a ${...} on as written, write \${...}"
# The fields Hydra reads as overrides, where `${oc.env:...}` passes on as written.
OVERRIDE_FIELDS = frozenset(SET_DEFAULTS)
# An `${oc.env:` not escaped already.
ENVIRONMENT_READ = re.compile(r"(?<!\\)\$\{(\s*oc\.env\s*:)")


def resolve(document: Any, lines: dict[Path, int], file: str) -> tuple[Any, dict[str, ConfigError]]:
    """The document with its jobs' `${...}` resolved, and the jobs that hold
    one that cannot be (by name, as `read_jobs` names them)."""
    jobs = document.get("jobs") if isinstance(document, dict) else None
    if not lines or not isinstance(jobs, dict):
        return document, {}
    errors: dict[str, ConfigError] = {}
    config = resolvable(jobs, lines, file, errors)
    resolved: dict[Any, Any] = {}
    for name, body in jobs.items():
        try:
            resolved[name] = resolved_value(config, name, body, ("jobs", str(name)), lines, file)
        except ConfigError as error:
            errors.setdefault(str(name), error)
            resolved[name] = body
    return {**document, "jobs": resolved}, errors


def resolvable(
    jobs: dict[Any, Any], lines: dict[Path, int], file: str, errors: dict[str, ConfigError]
) -> Container:
    """The jobs as OmegaConf's `jobs` node, with the schema's defaults; a
    string OmegaConf cannot even parse (`${foo`) is an error of its job and
    left out, so the other jobs still resolve."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    view = plain(jobs)
    for body in view.values():
        with_defaults(body)
    for path, holder, key in interpolated_strings(view, ("jobs",)):
        if path[-1] in OVERRIDE_FIELDS:
            holder[key] = ENVIRONMENT_READ.sub(r"\\${\1", holder[key])
        try:
            OmegaConf.create({"value": holder[key]})
        except OmegaConfBaseException as error:
            errors.setdefault(str(path[1]), located(file, path, lines, holder[key], error))
            holder[key] = ""
    try:
        return OmegaConf.create({"jobs": view}, flags={"allow_objects": True}).jobs  # type: ignore[no-any-return]
    except OmegaConfBaseException as error:
        raise ConfigError(
            file, "jobs", f"cannot be read for its ${{...}}: {reason(error)}"
        ) from None


def plain(value: Any, depth: int = 0) -> Any:
    """A copy OmegaConf takes: every key as its text (a YAML key may be null,
    a number or a date), containers deeper than a jobs file's left out (an
    alias may make a document recursive)."""
    if isinstance(value, dict):
        if depth > INTERPOLATION_DEPTH:
            return None
        return {str(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return None if depth > INTERPOLATION_DEPTH else [plain(v, depth + 1) for v in value]
    return value


def with_defaults(body: Any) -> None:
    """The schema's defaults filled in where the job (and its sets) leave a field out."""
    if not isinstance(body, dict):
        return
    for key, default in JOB_DEFAULTS.items():
        body.setdefault(key, default)
    sets = body.setdefault("sets", [])
    for job_set in sets if isinstance(sets, list) else ():
        if isinstance(job_set, dict):
            for key, default in SET_DEFAULTS.items():
                job_set.setdefault(key, default)


def interpolated_strings(value: Any, path: Path) -> Iterator[tuple[Path, Any, Any]]:
    """Every string holding `${` under `value`: its place, its container and key."""
    if len(path) >= INTERPOLATION_DEPTH:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in list(items):
        place = (*path, key if isinstance(value, list) else str(key))
        if isinstance(item, str) and "${" in item:
            yield place, value, key
        elif isinstance(item, (dict, list)):
            yield from interpolated_strings(item, place)


def resolved_value(
    parent: Container, key: Any, value: Any, path: Path, lines: dict[Path, int], file: str
) -> Any:
    """`value` (at `parent[key]` in OmegaConf's view) with every `${...}` in it resolved."""
    from omegaconf import Container, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    key = key if isinstance(parent, ListConfig) else str(key)
    if isinstance(value, str) and "${" in value:
        try:
            result = parent[key]
            if isinstance(result, Container):
                result = OmegaConf.to_container(result, resolve=True)
        except OmegaConfBaseException as error:
            raise located(file, path, lines, value, error) from None
        if path[-1] in STRING_FIELDS and isinstance(result, (bool, int, float)):
            return str(result)
        return result
    if len(path) >= INTERPOLATION_DEPTH or not isinstance(value, (dict, list)):
        return value
    node = parent[key]
    if isinstance(value, dict):
        return {
            k: resolved_value(node, k, v, (*path, str(k)), lines, file) for k, v in value.items()
        }
    return [resolved_value(node, i, v, (*path, i), lines, file) for i, v in enumerate(value)]


def located(
    file: str, path: Path, lines: dict[Path, int], value: str, error: Exception
) -> ConfigError:
    """`hydraflow.yaml:6: jobs.b.run: cannot resolve '${x}': ...`, one line."""
    line = lines.get(path)
    where = f"{file}:{line}" if line else file
    return ConfigError(
        where, dotted(path), f"cannot resolve {value!r}: {reason(error)} ({ESCAPE_HINT})"
    )


def reason(error: Exception) -> str:
    """OmegaConf's message without its `full_key:` lines, and without the
    wrapper's `KeyError raised while resolving interpolation:`."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return first.split(" raised while resolving interpolation: ", 1)[-1].strip('"')
