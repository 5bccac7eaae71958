"""Secrets in configs: what is never written to the store or its artifacts.

A config value is secret when resolving it reads the environment — `oc.env`,
an interpolation that contains it (`${oc.env:A}/x`), a key that interpolates
such a key, or a custom resolver that reads `os.environ` — or when its key
matches a pattern the app marks secret (`secrets=["db.password", "*.token"]`).
A secret is recorded as its interpolation text (`${oc.env:API_KEY}`) or, for
a literal, as `***`; the digest is taken of that record, so a run's identity
never depends on a secret's value, nor on whether the variable is set.
Another value that contains a secret's value has just that part as `***`
(`/mnt/ds/train` as `***/train`): two configs that differ elsewhere stay
two. A default that stands in for an unset variable (`${oc.env:DATA,/data}`)
is not hidden elsewhere: it is the config's own text. The app still
receives the real value.

A value that says where or when a job runs rather than what it computes
(`${hydra:runtime.output_dir}`, `${hydra:runtime.cwd}`, `${now:...}`, and
values interpolating them) is recorded as its text in the same way: a new
sweep directory is the same configuration, so a sweep run again resumes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REDACTED = "***"
# Hydra's values that say where a job runs (its `hydra` resolver's paths),
# and the nodes that hold them (`${hydra:runtime}` is all of it).
LAUNCH_PATHS = ("runtime.output_dir", "runtime.cwd", "run.dir", "sweep.dir")
LAUNCH_NODES = ("runtime", "run", "sweep")
# A variable an interpolation names (`${oc.env:KEY}`, `${oc.env:KEY,default}`):
# one that fails to resolve has its value hidden all the same.
ENV_NAMED = re.compile(r"\$\{oc\.env:([^,}]+)")
# Shorter secret values are redacted where they are recorded as values, but
# not searched for in free text (logs, Hydra's files), where they would match
# too much (a `DEBUG=1` read with oc.env is secret, but "1" is everywhere).
MIN_SCRUB_LENGTH = 6


@dataclass(frozen=True)
class Secrets:
    """The secret keys of one job's config (dotted paths, list items by
    index), what each is recorded as, and the values to scrub from text."""

    recorded: Mapping[str, str] = field(default_factory=dict)
    values: frozenset[str] = frozenset()
    marked: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.recorded or self.marked)

    def redact(self, config: Any, path: str = "") -> Any:
        """A copy of a plain config (dicts and lists) with every secret as recorded."""
        if path in self.recorded:
            return self.recorded[path]
        if isinstance(config, Mapping):
            return {key: self.redact(value, join(path, key)) for key, value in config.items()}
        if isinstance(config, list):
            return [self.redact(value, join(path, index)) for index, value in enumerate(config)]
        if isinstance(config, str):
            return self.scrub(config)  # an `update` copied a secret elsewhere
        return config

    def overrides(self, overrides: Sequence[str]) -> list[str]:
        """The overrides with a secret key's value as `***`, and secret values in others."""
        return [self.override(override) for override in overrides]

    def override(self, override: str) -> str:
        key, equals, value = override.partition("=")
        if not equals:
            return override
        if is_marked(key.lstrip("+~"), self.marked):
            return f"{key}={REDACTED}"
        return f"{key}={self.scrub(value)}"

    def scrub(self, text: str) -> str:
        """Free text (a log, Hydra's files) with every long enough secret value as `***`."""
        for value in sorted(self.values, key=len, reverse=True):
            if len(value) >= MIN_SCRUB_LENGTH:
                text = text.replace(value, REDACTED)
        return text

    def redact_yaml(self, text: str) -> str:
        """A saved, unresolved config (Hydra's `config.yaml`) with its marked
        literals as `***`; its oc.env values are interpolation text already."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        hidden = [path for path, shown in self.recorded.items() if shown == REDACTED]
        if not hidden:
            return text
        try:
            conf = OmegaConf.create(text)
            for path in hidden:
                OmegaConf.update(conf, path, REDACTED, merge=False, force_add=False)
            return OmegaConf.to_yaml(conf)
        except OmegaConfBaseException:
            return REDACTED  # a config.yaml that cannot be read is not uploaded as it is


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def is_marked(path: str, patterns: Sequence[str]) -> bool:
    """A pattern with a dot matches the whole dotted key (`db.password`,
    `*.token`); one without matches a key of that name at any depth
    (`password`). A marked key marks everything under it."""
    parts = path.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if "." in pattern:
            if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def find_secrets(cfg: Any, marked: Sequence[str] = ()) -> Secrets:
    """The secrets of a composed config (a DictConfig; anything else has
    only the marked ones); see `resolve_watched`."""
    return resolve_watched(cfg, marked)[0]


def resolve_watched(cfg: Any, marked: Sequence[str] = ()) -> tuple[Secrets, Any]:
    """The secrets of a composed config, and the config resolved as plain
    data (None for anything but a DictConfig), in one resolution of the
    config itself: resolvers run once, their side effects happen once, and a
    cached resolver gives the app the very value recorded. Each
    interpolation is resolved while reads of `os.environ` are watched; a
    cached resolver's reads count for every key that uses its value."""
    from omegaconf import DictConfig

    if not isinstance(cfg, DictConfig):
        return Secrets(marked=tuple(marked)), None
    found: list[Leaf] = []
    with watched_environment() as reads, watched_resolvers(reads) as launch_uses:
        plain = walk(cfg, Walk(found, reads, launch_uses))
    recorded: dict[str, str] = {}
    values: set[str] = set()
    for leaf in found:
        if leaf.reads_environment or leaf.says_launch or is_marked(leaf.path, marked):
            text = leaf.raw if isinstance(leaf.raw, str) and "${" in leaf.raw else REDACTED
            recorded[leaf.path] = text
            if leaf.given_by_environment or is_marked(leaf.path, marked):
                values.update(leaf_texts(leaf.value))
            values.update(leaf.given_by_environment)  # in `${oc.env:A,x}-${oc.env:B}` too
    return Secrets(recorded, frozenset(values), tuple(marked)), plain


@dataclass(frozen=True)
class Leaf:
    path: str  # dotted, list items by index
    raw: Any  # as written: `${oc.env:KEY}` for an interpolation
    value: Any  # resolved (None when it cannot be)
    reads_environment: bool  # looks a variable up, set or not
    given_by_environment: tuple[str, ...] = ()  # the values of the set variables it reads
    says_launch: bool = False  # where or when the job runs (`watched_resolvers`)


@dataclass(frozen=True)
class Walk:
    """What one resolution of a config collects: its leaves, the variables
    read (in order) and the uses of launch values."""

    found: list[Leaf]
    reads: list[tuple[str, str | None]]
    launch_uses: list[str]


def walk(node: Any, seen: Walk, path: str = "") -> Any:
    """The container as `OmegaConf.to_container(resolve=True)` makes it, but
    an interpolation that cannot be resolved stays as written (Hydra runs an
    app that never reads it, and so must hydraflow); each leaf goes to `seen`."""
    from omegaconf import MISSING, Container, OmegaConf

    keys = node.keys() if OmegaConf.is_dict(node) else range(len(node))
    plain: dict[Any, Any] = {}
    for key in keys:
        child = node._get_node(key)
        here = join(path, key)
        if child._is_interpolation():
            plain[key] = resolved_leaf(child, here, seen)
        elif not isinstance(child, Container):
            seen.found.append(Leaf(here, child._value(), child._value(), reads_environment=False))
            plain[key] = child._value()
        elif child._is_none():
            plain[key] = None
        elif child._is_missing():
            plain[key] = MISSING
        else:
            plain[key] = walk(child, seen, here)
    return plain if OmegaConf.is_dict(node) else list(plain.values())


def resolved_leaf(child: Any, path: str, seen: Walk) -> Any:
    """An interpolation's value (its text when it cannot be resolved), resolved
    as `to_container` does; the variables it reads make its leaf."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.errors import OmegaConfBaseException

    from hydraflow.tracking.configs import resolved

    start = len(seen.reads)
    seen.launch_uses.clear()
    raw = child._value()
    try:
        target = child._dereference_node()
        value = resolved(target) if isinstance(target, DictConfig | ListConfig) else target._value()
        kept = value
    except OmegaConfBaseException:
        value, kept = None, raw
        for name in ENV_NAMED.findall(str(raw)):  # parts after the failure were not read
            os.environ.get(name)
    reads = seen.reads[start:]
    given = tuple(found for _, found in reads if found is not None)
    seen.found.append(Leaf(path, raw, value, bool(reads), given, bool(seen.launch_uses)))
    return kept


def says_launch(path: str) -> bool:
    return path in LAUNCH_NODES or path.startswith(LAUNCH_PATHS)


@contextlib.contextmanager
def watched_resolvers(reads: list[tuple[str, str | None]]) -> Iterator[list[str]]:
    """Watches every resolver inside the block (OmegaConf's registered
    wrappers, called even when their cache answers). It records each use of
    Hydra's `now` resolver, and of its `hydra` resolver for a value of
    LAUNCH_PATHS (not `job.num`: a seed may be one). A call its cache answers
    repeats, in `reads`, the variables the call read when it ran; one cached
    before (by Hydra, or an app given a config it read) is run once more,
    its cached value kept, only to see what it reads."""
    from omegaconf.basecontainer import BaseContainer

    resolvers = BaseContainer._resolvers
    originals: dict[str, Any] = dict(resolvers)
    uses: list[str] = []
    read_by: dict[tuple[str, tuple[str, ...]], list[tuple[str, str | None]]] = {}

    def watched(name: str, resolver: Any) -> Any:
        def resolve(config: Any, parent: Any, node: Any, args: Any, args_str: Any) -> Any:
            from omegaconf import OmegaConf

            if name == "now" or (name == "hydra" and args and says_launch(str(args[0]))):
                uses.append(name)
            call = (name, tuple(args_str))
            cached = OmegaConf.get_cache(config).get(name)
            start = len(reads)
            if cached is not None and call[1] in cached and call not in read_by:
                earlier = cached.pop(call[1])
                try:
                    resolver(config, parent, node, args, args_str)
                finally:
                    cached[call[1]] = earlier
            value = resolver(config, parent, node, args, args_str)
            if len(reads) > start or call not in read_by:
                read_by[call] = reads[start:]
            else:
                reads.extend(read_by[call])
            return value

        return resolve

    resolvers.update({name: watched(name, resolver) for name, resolver in originals.items()})
    try:
        yield uses
    finally:
        resolvers.update(originals)


def leaf_texts(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from leaf_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaf_texts(item)
    elif value is not None:
        yield str(value)


@contextlib.contextmanager
def watched_environment() -> Iterator[list[tuple[str, str | None]]]:
    """Records the variables looked up through `os.environ` (and so
    `os.getenv` and `oc.env`, which look it up at each call) inside the
    block, each with its value (None when unset)."""
    real = os.environ
    reads: list[tuple[str, str | None]] = []
    os.environ = WatchedEnviron(real, reads)  # noqa: B003 (the same data, watched)
    try:
        yield reads
    finally:
        os.environ = real  # noqa: B003


class WatchedEnviron(os._Environ[str]):
    """`os.environ` itself (same data, same writes), with its reads recorded."""

    def __init__(self, real: os._Environ[str], reads: list[tuple[str, str | None]]) -> None:
        super().__init__(
            real._data,  # type: ignore[attr-defined]
            real.encodekey,
            real.decodekey,
            real.encodevalue,
            real.decodevalue,
        )
        self.reads = reads

    def __getitem__(self, key: str) -> str:
        try:
            value = super().__getitem__(key)
        except KeyError:
            self.reads.append((key, None))
            raise
        self.reads.append((key, value))
        return value


def redact_hydra_files(source: Path, target: Path, secrets: Secrets) -> None:
    """Copies Hydra's `.hydra/` files to `target` with the secrets as recorded:
    marked keys of `config.yaml` as `***` (oc.env values are interpolations
    there already), secret overrides as `key=***` wherever they appear (also
    in `hydra.yaml`), and long enough secret values scrubbed."""
    from omegaconf import OmegaConf

    overrides_file = source / "overrides.yaml"
    overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else None
    replacements = {str(o): secrets.override(str(o)) for o in overrides or ()}
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.iterdir()):
        if not file.is_file():
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.name == "config.yaml":
            text = secrets.redact_yaml(text)
        for original, redacted in replacements.items():
            if original != redacted:
                text = text.replace(original, redacted)
        (target / file.name).write_text(secrets.scrub(text), encoding="utf-8")
