"""Runs made by other tools, adopted as the runs of their configs.

The published HydraFlow, and an app that starts an MLflow run under
`@hydra.main` itself and logs Hydra's `.hydra/` files as artifacts, leave
runs without `hydraflow.digest`. The first time a process of a job reaches
the job's experiment, every active run of it with neither the digest nor the
mark `hydraflow.adopted` is examined, once: the digest hydraflow's own run of
the same config would carry is taken of its `.hydra/config.yaml` (as Hydra
saved it; resolved and with its secrets as hydraflow records them) or, with
`match_overrides`, of its `.hydra/overrides.yaml`, and written on it with the
tags `hydraflow.adopted`, `hydraflow.overrides` and `hydraflow.config`. From
then on it is its config's run like any of hydraflow's: skipped when
FINISHED, resumed under its id otherwise. A run with neither file is marked
`hydraflow.adopted = none` and never read again; a RUNNING one is left for
later, since its files may be on their way.

A SQLite store is examined under its file lock, so two processes never both
do it, and its tags are written in one transaction; a tracking server's runs
get theirs through MLflow's client (the same tags from whoever writes them).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from hydraflow.mlflow_schema import (
    ADOPTED_TAG,
    CONFIG_TAG,
    DIGEST_TAG,
    MAX_TAG_LENGTH,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    ForeignRun,
    foreign_runs_in_sqlite,
    write_tags_in_sqlite,
)
from hydraflow.store import lock_for, retry_busy, sqlite_path
from hydraflow.tracking.identity import config_digest, config_json, overrides_digest
from hydraflow.tracking.secrets import join

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("hydraflow")

CONFIG_FILE = ".hydra/config.yaml"
OVERRIDES_FILE = ".hydra/overrides.yaml"
NOT_A_CONFIG = "none"
# Hydra's section of a config saved whole (`--cfg all`); the app never gets it.
HYDRA_KEY = "hydra"
# Reads from the disk and downloads from a tracking server wait: overlap them.
READERS = 8


@dataclass(frozen=True)
class Adoption:
    """How the adopting app takes a run's identity: as its own runs get theirs."""

    match_overrides: bool = False
    secrets: tuple[str, ...] = ()

    def tags(self, config_text: str | None, overrides_text: str | None) -> dict[str, str]:
        """The tags that make a run with these `.hydra/` files the run of its
        config; only the mark `none` when the files cannot tell which."""
        from hydraflow.tracking.secrets import Secrets

        overrides = Secrets(marked=self.secrets).overrides(read_overrides(overrides_text))
        recorded = config_record(config_text, self.secrets)
        if self.match_overrides and overrides_text is not None:
            digest, source = overrides_digest(overrides), OVERRIDES_FILE
        elif not self.match_overrides and recorded is not None:
            digest, source = config_digest(recorded[0]), CONFIG_FILE
        else:
            return {ADOPTED_TAG: NOT_A_CONFIG}
        tags = {
            DIGEST_TAG: digest,
            ADOPTED_TAG: source,
            OVERRIDES_TAG: " ".join(overrides)[:MAX_TAG_LENGTH],
        }
        as_json = config_json(recorded[1]) if recorded is not None else ""
        if as_json and len(as_json) <= MAX_TAG_LENGTH:
            tags[CONFIG_TAG] = as_json
        return tags


# The (store, experiment, adoption) examined by this process: a job's later
# jobs in the same process need not ask again.
EXAMINED: set[tuple[str, str, Adoption]] = set()


def adopt_in_sqlite(uri: str, experiment: str, launch_dir: Path, adoption: Adoption) -> int:
    """Examines the experiment's foreign runs in a SQLite store, under its
    lock; returns how many were examined (0 when none was waiting)."""
    path = sqlite_path(uri)
    key = (uri, experiment, adoption)
    if path is None or key in EXAMINED or not path.exists():
        return 0
    examined: list[dict[str, str]] = []
    if foreign_runs_in_sqlite(path, experiment):
        with lock_for(uri, launch_dir):
            runs = foreign_runs_in_sqlite(path, experiment)  # another process may have been first
            examined = examine(runs, adoption, client_for_remote_artifacts(uri, runs))
            rows = [
                (run.run_id, tag, value)
                for run, tags in zip(runs, examined, strict=True)
                for tag, value in tags.items()
            ]
            retry_busy(lambda: write_tags_in_sqlite(path, rows))
        report(experiment, examined)
    EXAMINED.add(key)
    return len(examined)


def client_for_remote_artifacts(uri: str, runs: list[ForeignRun]) -> MlflowClient | None:
    """MLflow's client, to download the artifacts not on this disk (a SQLite
    store whose artifacts are elsewhere); None when all are here."""
    if all(local_path(run.artifact_uri) is not None for run in runs):
        return None
    import mlflow

    return mlflow.MlflowClient(uri)


def adopt_with_client(
    client: MlflowClient, experiment_id: str, uri: str, experiment: str, adoption: Adoption
) -> int:
    """Examines the experiment's foreign runs through MLflow's client (a
    tracking server); returns how many were examined."""
    from mlflow.entities import RunTag

    key = (uri, experiment, adoption)
    if key in EXAMINED:
        return 0
    runs = foreign_runs(client, experiment_id)
    examined = examine(runs, adoption, client)
    with ThreadPoolExecutor(READERS) as pool:

        def write(run: ForeignRun, tags: dict[str, str]) -> None:
            if tags:
                batch = [RunTag(tag, value) for tag, value in tags.items()]
                retry_busy(lambda: client.log_batch(run.run_id, tags=batch))

        list(pool.map(write, runs, examined))
    report(experiment, examined)
    EXAMINED.add(key)
    return len(runs)


def report(experiment: str, examined: list[dict[str, str]]) -> None:
    """One line when runs were adopted (not for runs that are no config's)."""
    adopted = sum(DIGEST_TAG in tags for tags in examined)
    if adopted:
        log.info(
            "adopted %d runs of %s made by another tool: each is now its config's run",
            adopted,
            experiment,
        )


def foreign_runs(client: MlflowClient, experiment_id: str) -> list[ForeignRun]:
    """The experiment's active runs with neither the digest nor the mark,
    nested runs left out."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    skipped = (DIGEST_TAG, ADOPTED_TAG, PARENT_RUN_TAG)
    missing = " AND ".join(f"tags.`{tag}` IS NULL" for tag in skipped)
    try:
        runs = search_all(client, experiment_id, missing, ViewType.ACTIVE_ONLY)
    except MlflowException:  # a server that cannot search for a missing tag: filter here
        runs = search_all(client, experiment_id, "", ViewType.ACTIVE_ONLY)
    return [
        ForeignRun(run.info.run_id, run.info.status, run.info.artifact_uri)
        for run in runs
        if not any(tag in run.data.tags for tag in skipped)
    ]


def search_all(client: MlflowClient, experiment_id: str, query: str, view: int) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = retry_busy(functools.partial(search_page, client, experiment_id, query, view, token))
        found.extend(page)
        token = page.token
        if not token:
            return found


def search_page(
    client: MlflowClient, experiment_id: str, query: str, view: int, token: str | None
) -> Any:
    return client.search_runs([experiment_id], query, view, max_results=10_000, page_token=token)


def examine(
    runs: list[ForeignRun], adoption: Adoption, client: MlflowClient | None = None
) -> list[dict[str, str]]:
    """Each run's tags; none for a RUNNING run without its files, which may be
    on their way, so it is examined again next time. The files are read by
    threads, which wait on the disk or the network together; the digests are
    taken in this one."""
    with ThreadPoolExecutor(READERS) as pool:
        files = list(pool.map(functools.partial(hydra_files, client=client), runs))
    return [
        {} if texts == (None, None) and run.status == "RUNNING" else adoption.tags(*texts)
        for run, texts in zip(runs, files, strict=True)
    ]


def hydra_files(run: ForeignRun, client: MlflowClient | None) -> tuple[str | None, str | None]:
    return artifact_text(run, CONFIG_FILE, client), artifact_text(run, OVERRIDES_FILE, client)


def artifact_text(run: ForeignRun, name: str, client: MlflowClient | None) -> str | None:
    """A run's artifact as text: read from the disk when it is there, else
    downloaded through `client`; None when it has none such."""
    local = local_path(run.artifact_uri)
    try:
        if local is not None and (local / name).is_file():
            return (local / name).read_text(encoding="utf-8")
        if client is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            downloaded = client.download_artifacts(run.run_id, name, folder)
            return Path(downloaded).read_text(encoding="utf-8")
    except Exception:  # no such artifact, or unreadable: the run cannot be its config's
        return None


def local_path(artifact_uri: str) -> Path | None:
    """The folder of artifacts kept on this machine's disk, else None."""
    if artifact_uri.startswith("/"):
        return Path(artifact_uri)
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    return None


# An override as Hydra writes it in overrides.yaml when YAML needs no quotes.
SIMPLE_OVERRIDE = re.compile(r"- ([+~]?[A-Za-z0-9_./@-]+=[A-Za-z0-9_.,/+-]*)")


def read_overrides(text: str | None) -> list[str]:
    import yaml

    lines = (text or "").splitlines()
    simple = [SIMPLE_OVERRIDE.fullmatch(line) for line in lines]
    if all(simple):
        return [match[1] for match in simple if match]
    try:
        overrides = yaml.load(text or "", Loader=fast_loader())
    except yaml.YAMLError:
        return []
    return [str(item) for item in overrides] if isinstance(overrides, list) else []


def config_record(text: str | None, secrets: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """What `hydraflow.tracking.configs.to_record` makes of the composed
    config, made of the config as Hydra saved it: the sorted YAML digested and
    the plain data recorded; None when the text is not a config.

    A config of plain values, references to other keys and `oc.env` values
    (no other resolver, no missing value, no marked secret) needs no
    OmegaConf: it is read and written with libyaml, a tenth of the cost; the
    rest goes through OmegaConf as the app's own does."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from hydraflow.tracking.configs import to_record
    from hydraflow.tracking.secrets import find_secrets

    if text is None:
        return None
    try:
        data = yaml.load(text, Loader=fast_loader())
        if not isinstance(data, dict):
            return None
        data.pop(HYDRA_KEY, None)  # Hydra's own settings, never in the app's config
        record = None if secrets else fast_record(data)
        if record is not None:
            return record
        conf = OmegaConf.create(data)
        return to_record(conf, find_secrets(conf, secrets))
    except (yaml.YAMLError, OmegaConfBaseException, ValueError, TypeError):
        return None


def fast_record(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """`to_record` of the loaded config without OmegaConf, when its values
    are plain, references to other keys or `oc.env`: each value that reads
    the environment recorded as its text and the values read hidden where
    they appear in other strings, as `find_secrets` and `Secrets.redact`
    do; None when the config needs OmegaConf."""
    from hydraflow.tracking.configs import DEFAULTS_KEY
    from hydraflow.tracking.secrets import Secrets

    found = with_references_resolved(data)
    if found is None:
        return None
    resolved, recorded, values = found
    plain = Secrets(recorded, frozenset(values)).redact(resolved) if recorded else resolved
    if not is_plain(plain, frozenset(recorded.values())):
        return None
    plain = {key: value for key, value in plain.items() if key != DEFAULTS_KEY}
    try:
        return sorted_yaml(plain), plain
    except NotOneLineError:
        return None


# `${model.name}`: a reference to another key, which reads nothing else.
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
# `${oc.env:KEY}` or `${oc.env:KEY,default}`, with a default OmegaConf's
# grammar reads as the same text (checked by `env_default`).
ENV = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,([A-Za-z0-9_/.:-]+))?\}")
INTERPOLATION = re.compile(f"{REFERENCE.pattern}|{ENV.pattern}")
# Words the grammar reads as null, a boolean or a float, not as text.
KEYWORD = re.compile(r"[+-]?(?:inf|nan)|null|true|false", re.IGNORECASE)
# What the grammar may read as a number (`1e3`, `1_000`, `1.50`, `007`).
NUMBER_LIKE = re.compile(r"[+-]?[0-9_.]*(?:[eE][+-]?[0-9_]*)?")
INTEGER = re.compile(r"0|[1-9][0-9]*")
# References to follow in a chain before leaving it to OmegaConf.
MAX_CHAIN = 8
# An `oc.env` without a default whose variable is not set: OmegaConf fails
# to resolve it (and every value that uses it), and records its text.
UNSET = object()
# What resolving a value takes from the environment, the most of its parts:
# nothing; a variable looked up, unset (recorded as its text, as any value
# that reads the environment, though its default is no secret); a variable set.
UNREAD, LOOKED_UP, GIVEN = 0, 1, 2


def with_references_resolved(
    data: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str], set[str]] | None:
    """The config with its references to other keys and `oc.env` values
    resolved as OmegaConf resolves them, the keys whose resolution reads the
    environment (dotted, list items by index) with their text, and the
    values of those a set variable gives. A value that is one interpolation becomes the
    value it refers to; a string with interpolations in it, the text with
    each replaced by its string or integer. None when anything else is to
    resolve (another resolver, a relative or missing key, a reference to a
    container, a float in a text, a default the grammar may read otherwise,
    a dotted key beside values read from the environment): OmegaConf, then."""
    recorded: dict[str, str] = {}
    values: set[str] = set()

    def leaf(value: Any, parent: str, key: object) -> Any:
        if isinstance(value, dict):
            here = join(parent, key)
            return {name: leaf(item, here, name) for name, item in value.items()}
        if isinstance(value, list):
            here = join(parent, key)
            return [leaf(item, here, index) for index, item in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value  # most values: no path joined for them
        resolved, environment = resolve(value, 0)
        if environment >= LOOKED_UP:
            recorded[join(parent, key)] = value
        if environment == GIVEN and resolved is not UNSET and resolved is not None:
            values.add(str(resolved))
        return value if resolved is UNSET else resolved

    def resolve(value: Any, depth: int) -> tuple[Any, int]:
        if not isinstance(value, str) or "$" not in value:
            return value, UNREAD
        # The shorter pattern when there is no `oc.env`: its group 1 is the same.
        pattern = INTERPOLATION if "oc.env" in value else REFERENCE
        if depth > MAX_CHAIN or "\\" in value or "$" in pattern.sub("", value):
            raise LookupError(value)
        whole = pattern.fullmatch(value)
        if whole:
            return interpolated(whole, depth)
        pieces: list[str] = []
        environment, unset = UNREAD, False
        end = 0
        for match in pattern.finditer(value):
            part, reads = interpolated(match, depth)
            environment = max(environment, reads)
            unset |= part is UNSET
            pieces += [value[end : match.start()], "" if unset else as_text(part)]
            end = match.end()
        return UNSET if unset else "".join(pieces) + value[end:], environment

    def interpolated(match: re.Match[str], depth: int) -> tuple[Any, int]:
        if match[1]:  # a key's path
            return referred(match[1], depth)
        value = environment_value(match[2], match[3])
        if match[2] not in os.environ:
            return value, LOOKED_UP
        values.add(str(value))  # hidden wherever it appears, as `find_secrets` hides it
        return value, GIVEN

    def referred(path: str, depth: int) -> tuple[Any, int]:
        node: Any = data
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                raise LookupError(path)
            node = node[key]
        if isinstance(node, dict | list) or node == "???":
            raise LookupError(path)
        return resolve(node, depth + 1)

    try:
        resolved = {key: leaf(value, "", key) for key, value in data.items()}
    except LookupError:
        return None
    if recorded and has_dotted_key(data):
        return None  # paths that may name two keys: as OmegaConf's walk decides
    return resolved, recorded, values


def has_dotted_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any("." in str(key) or has_dotted_key(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_dotted_key(item) for item in value)
    return False


def environment_value(key: str, default: str | None) -> Any:
    """What `oc.env` returns: the variable (read as it reads it), else the
    default as text, else UNSET."""
    if KEYWORD.fullmatch(key) or (default is not None and not is_text_default(default)):
        raise LookupError(key)
    try:
        value = os.environ[key]
    except KeyError:
        return UNSET if default is None else default
    if "$" in value:
        raise LookupError(key)  # what OmegaConf makes of it is for OmegaConf to say
    return value


def is_text_default(default: str) -> bool:
    """Whether OmegaConf's grammar reads the default as this very text (it
    reads `1e3` as 1000.0, `1_0` as 10, `TRUE` as True, `null` as None)."""
    if KEYWORD.fullmatch(default):
        return False
    return bool(INTEGER.fullmatch(default)) or not NUMBER_LIKE.fullmatch(default)


def as_text(value: Any) -> str:
    """A value inside a string interpolation, as OmegaConf writes it there;
    only where `str` is certainly the same."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise LookupError(value)


def is_plain(value: Any, interpolations: frozenset[str] = frozenset(), depth: int = 0) -> bool:
    """Whether the loaded YAML is data OmegaConf would take as it is and
    libyaml writes as PyYAML does: short one-line ASCII strings, numbers,
    booleans and None; nothing to resolve but the `interpolations` recorded
    as their text. (Quoted with escapes, non-ASCII or
    folded at 80 columns, strings come out of the two emitters differently.)"""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(
            is_short_text(key) and is_plain(item, interpolations, depth + 1)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(is_plain(item, interpolations, depth + 1) for item in value)
    if isinstance(value, str):
        return (
            is_short_text(value)
            and ("$" not in value or value in interpolations)
            and value != "???"
        )
    return value is None or isinstance(value, bool | int | float)


# No line of such data reaches the 80 columns where PyYAML folds a string at
# its spaces: at most 2 x MAX_DEPTH of indent, a key, a value, quotes and
# separators. A string without a space is never folded.
MAX_DEPTH = 5
SHORT_TEXT = 40
SHORT_SPACED_TEXT = 20


def is_short_text(text: Any) -> bool:
    return (
        isinstance(text, str)
        and len(text) <= (SHORT_SPACED_TEXT if " " in text else SHORT_TEXT)
        and text.isascii()
        and text.isprintable()
        and text == text.strip()
    )


def sorted_yaml(plain: dict[str, Any]) -> str:
    """`OmegaConf.to_yaml(..., sort_keys=True)` of plain data, emitted by
    libyaml. A sweep's configs share their keys and differ in values, so
    the YAML of each shape (keys, list lengths, a slot per value) is emitted
    once, the text of each value once, and a config is the two put together."""
    values: list[Any] = []
    return shape_yaml(shape_of(plain, values)).format(*map(value_yaml, values))


Shape = tuple[Any, ...] | str
VALUE = "v"


def shape_of(data: Any, values: list[Any]) -> Shape:
    """The data's keys (sorted, as emitted) and list lengths, with `VALUE`
    for each value, which goes into `values` in the order it is emitted."""
    if isinstance(data, dict):
        return ("dict", *((key, shape_of(data[key], values)) for key in sorted(data)))
    if isinstance(data, list):
        return ("list", *(shape_of(item, values) for item in data))
    values.append(data)
    return VALUE


@functools.lru_cache(maxsize=1024)
def shape_yaml(shape: Shape) -> str:
    """The YAML of a shape, a `str.format` field in each value's place."""
    import yaml

    slots: list[str] = []

    def build(part: Shape) -> Any:
        if isinstance(part, str):
            slots.append(f"hydraflowslot{len(slots)}x")
            return slots[-1]
        kind, *items = part
        if kind == "dict":
            return {key: build(item) for key, item in items}
        return [build(item) for item in items]

    text = yaml.dump(
        build(shape),
        Dumper=fast_dumper(),
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=True,
    )
    text = text.replace("{", "{{").replace("}", "}}")
    for index, slot in enumerate(slots):
        text = text.replace(slot, f"{{{index}}}")
    return str(text)


# The YAML of each value met: (its type, its repr) -> its text.
VALUE_TEXTS: dict[tuple[type, str], str] = {}
MAX_VALUE_TEXTS = 100_000


class NotOneLineError(ValueError):
    """A value whose YAML takes more than a line: OmegaConf writes that config."""


def value_yaml(value: Any) -> str:
    key = (type(value), repr(value))
    text = VALUE_TEXTS.get(key)
    if text is None:
        import yaml

        item = yaml.dump([value], Dumper=fast_dumper(), default_flow_style=False)
        text = item.removeprefix("- ").removesuffix("\n")
        if "\n" in text:
            raise NotOneLineError(value)
        if len(VALUE_TEXTS) > MAX_VALUE_TEXTS:
            VALUE_TEXTS.clear()
        VALUE_TEXTS[key] = text
    return text


@functools.cache
def fast_loader() -> type:
    """OmegaConf's YAML loader (its float and no-timestamp rules, duplicate
    keys refused) on libyaml's parser."""
    from omegaconf._utils import get_yaml_loader
    from yaml.constructor import SafeConstructor
    from yaml.cyaml import CParser  # type: ignore[attr-defined]
    from yaml.resolver import Resolver

    class Loader(CParser, get_yaml_loader()):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


@functools.cache
def fast_dumper() -> type:
    """OmegaConf's YAML dumper (strings that read as numbers or booleans
    quoted) on libyaml's emitter."""
    import yaml
    from omegaconf._utils import OmegaConfDumper

    class Dumper(yaml.CDumper):
        pass

    Dumper.add_representer(str, OmegaConfDumper.str_representer)  # type: ignore[arg-type]
    return Dumper
