"""Loading `hydraflow.yaml`: jobs, their command and their parameter sets.

Only the shape is checked here; the sweep grammar is applied when a job is
planned (see `plan.py`), where errors name the same locations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hydraflow._core import SweepSyntaxError, split
from hydraflow.errors import ConfigError, closest

if TYPE_CHECKING:
    from yaml import MarkedYAMLError

    from hydraflow.runner.jobs_yaml import DuplicateKey, Loaded

DEFAULT_FILE = "hydraflow.yaml"
COMMAND_KEYS = ("run", "call", "submit")
JOB_KEYS = ("name", *COMMAND_KEYS, "add", "sets", "stopping")
SET_KEYS = ("each", "all", "add")

Kind = Literal["run", "call", "submit"]


@dataclass(frozen=True)
class Arguments:
    """One `each`/`all`/`add` field, split into arguments, and where it came from."""

    items: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class JobSet:
    each: Arguments
    all: Arguments
    add: Arguments


@dataclass(frozen=True)
class Job:
    # The job's key under `jobs:`, which `hydraflow run NAME` names.
    name: str
    kind: Kind
    command: str
    add: Arguments
    sets: tuple[JobSet, ...]
    file: str
    # Hydra's job name, so the MLflow experiment: `name:` if the job has
    # one (as in the published HydraFlow), else its key.
    experiment: str
    # The early-stopping rule for the job's apps (`stopping:`, see
    # `read_stopping`), given to them in HYDRAFLOW_STOPPING; None: the
    # decorator's.
    stopping: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobsFile:
    """The file's jobs in their order; a job with a mistake is kept as its
    error, reported when that job is run or shown, so the others still work."""

    path: str
    jobs: dict[str, Job | ConfigError]


def load_jobs(path: str | Path = DEFAULT_FILE) -> JobsFile:
    """Reads and checks a jobs file; raises ConfigError naming the place."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "", f"no such file{near_miss(Path(path))}") from None
    except OSError as error:
        raise ConfigError(file, "", f"cannot be read: {error.strerror}") from None
    loaded = parse_yaml(decoded(data, file), file)
    refuse_duplicates_outside_jobs(loaded.duplicates, file)
    document, unresolved = resolve_interpolations(loaded, file)
    jobs = read_jobs(document, file)
    jobs.update(unresolved)
    jobs.update(duplicates_in_jobs(loaded.duplicates, jobs, file))
    return JobsFile(file, jobs)


def near_miss(path: Path) -> str:
    """What to do about a missing jobs file: a file of a close name beside it
    (`hydraflow.yml`) is named, else `-c FILE`."""
    folder = path.parent
    try:
        names = [entry.name for entry in folder.iterdir() if entry.is_file()]
    except OSError:
        names = []
    meant = closest(path.name, names, cutoff=0.8)
    if meant is None:
        return " (use -c FILE to name another)"
    found = meant if str(folder) == "." else str(folder / meant)
    return f", but {found} is there (use -c {found})"


def decoded(data: bytes, file: str) -> str:
    """The file as text; a byte that is not UTF-8 is named by line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start : error.start + 1].hex()
        message = f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8"
        raise ConfigError(file, f"line {line}, column {column}", message) from None


def resolve_interpolations(loaded: Loaded, file: str) -> tuple[Any, dict[str, ConfigError]]:
    """The document with its `${...}` resolved, as the published HydraFlow
    (OmegaConf) resolves them, and the jobs holding one that cannot be."""
    if not loaded.interpolation_lines:
        return loaded.document, {}
    from hydraflow.runner.interpolation import resolve

    return resolve(loaded.document, loaded.interpolation_lines, file)


def parse_yaml(text: str, file: str) -> Loaded:
    """The document, the keys it gives twice and where its `${...}` are;
    raises ConfigError for invalid YAML."""
    # here, not at the top: `hydraflow --help` never needs PyYAML
    import yaml

    from hydraflow.runner import jobs_yaml

    try:
        return jobs_yaml.load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"{error.problem or error}{colon_hint(text, error)}"
        raise ConfigError(file, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(file, "", f"invalid YAML: {error}") from None


def colon_hint(text: str, error: MarkedYAMLError) -> str:
    """`each: seed=1:` ends a plain value with ': ', which YAML reads as a
    key: said, with the value quoted, when the line is just that."""
    mark = error.problem_mark
    if error.problem != "mapping values are not allowed here" or mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    before, after = line[: mark.column], line[mark.column + 1 :]
    value = before.rsplit(": ", 1)[-1].strip()
    if line[mark.column : mark.column + 1] != ":" or after.strip() or "'" in value:
        return ""
    if "=" not in value or any(char in value for char in ' #"\t'):
        return ""
    return f" (quote the value: '{value}:')"


def read_jobs(document: Any, file: str) -> dict[str, Job | ConfigError]:
    if document is None:
        raise ConfigError(file, "", "the file is empty; it needs a 'jobs:' mapping")
    if not isinstance(document, dict):
        raise ConfigError(file, "", "the top level must be a mapping with a 'jobs:' key")
    check_keys(document, ("jobs",), file, "")
    jobs = document.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise ConfigError(file, "jobs", "must be a mapping of job names to jobs")
    return {str(name): read_job_or_error(str(name), body, file) for name, body in jobs.items()}


def job_of(duplicate: DuplicateKey) -> str | None:
    """The job a key given twice is in (or the job given twice), if any."""
    if duplicate.path[:1] != ("jobs",):
        return None
    return str(duplicate.path[1]) if duplicate.path[1:] else duplicate.key


def refuse_duplicates_outside_jobs(duplicates: list[DuplicateKey], file: str) -> None:
    for duplicate in duplicates:
        if job_of(duplicate) is None:
            raise ConfigError(file, duplicate.where, duplicate.message)


def duplicates_in_jobs(
    duplicates: list[DuplicateKey], jobs: dict[str, Job | ConfigError], file: str
) -> dict[str, ConfigError]:
    """A key given twice inside a job, or a job given twice, makes that job an
    error (its first duplicate), so the file's other jobs still run."""
    errors: dict[str, ConfigError] = {}
    # A job given twice first: the keys inside might be in the copy YAML drops.
    for duplicate in sorted(duplicates, key=lambda d: len(d.path) > 1):
        name = job_of(duplicate)
        error = ConfigError(file, duplicate.where, duplicate.message)
        if name is None or name not in jobs:  # a key YAML reads as another type (`yes:` as True)
            raise error
        errors.setdefault(name, error)
    return errors


def read_job_or_error(name: str, body: Any, file: str) -> Job | ConfigError:
    try:
        return read_job(name, body, file)
    except ConfigError as error:
        return error


def read_job(name: str, body: Any, file: str) -> Job:
    where = f"jobs.{name}"
    if not isinstance(body, dict):
        raise ConfigError(file, where, "a job must be a mapping with one of: run, call, submit")
    check_keys(body, JOB_KEYS, file, where)
    body = without_empty_strings(body)
    commands = [key for key in COMMAND_KEYS if key in body]
    if len(commands) != 1:
        found = " and ".join(commands) if commands else "none"
        message = f"a job needs exactly one of run, call or submit (found {found})"
        raise ConfigError(file, where, message)
    kind: Kind = commands[0]  # type: ignore[assignment]
    command = body[kind]
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(file, f"{where}.{kind}", "must be a non-empty string")
    sets = body.get("sets", [{}])
    if sets is None:  # `sets:` with nothing after it, its sets commented out?
        message = "is empty; leave sets out to run the command once"
        raise ConfigError(file, f"{where}.sets", message)
    if not isinstance(sets, list):
        raise ConfigError(file, f"{where}.sets", "must be a list of sets (each/all/add)")
    if not sets:
        message = "an empty list runs nothing; leave sets out to run the command once"
        raise ConfigError(file, f"{where}.sets", message)
    return Job(
        name=name,
        kind=kind,
        command=command.strip(),
        add=read_given_arguments(body, "add", file, where),
        sets=tuple(read_set(s, file, f"{where}.sets[{i}]") for i, s in enumerate(sets)),
        file=file,
        experiment=read_name(
            body.get("name", name), file, f"{where}.name" if "name" in body else where
        ),
        stopping=read_stopping(body.get("stopping"), file, f"{where}.stopping"),
    )


def without_empty_strings(body: dict[Any, Any]) -> dict[Any, Any]:
    """The mapping without its keys given as an explicit `''`: the published
    HydraFlow's schema defaults every field to `''`, and its `hydraflow show`
    prints them (`call: ''`), so `''` is a field left out. A key given with
    nothing (`each:`, YAML's null) is another thing: a slip, refused."""
    return {key: value for key, value in body.items() if value != ""}


def read_name(value: Any, file: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(file, where, "must be a non-empty string (the experiment's name)")
    if "/" in value:
        # Hydra names each job's log file after it: a '/' fails every job
        # with a traceback from Hydra's logging set-up.
        message = (
            f"'{value.strip()}' must not contain '/' (Hydra names the job's log file after it)"
        )
        raise ConfigError(file, where, message)
    refused = next((char for char in value.strip() if not hydra_reads_unquoted(char)), None)
    if refused is not None:
        # The name goes to Hydra as `hydra.job.name=NAME`, which its override
        # parser refuses: every command would fail.
        named = "" if where.endswith(".name") else "; give the job a name (name: NAME) Hydra reads"
        message = (
            f"'{value.strip()}' cannot be Hydra's job name: Hydra's parser refuses {refused!r} "
            f"in hydra.job.name={value.strip()}{named}"
        )
        raise ConfigError(file, where, message)
    return value.strip()


# What Hydra's override parser refuses in an unquoted value (Hydra 1.3's
# OverrideLexer; ',' makes a sweep): a job name holding one fails every command.
HYDRA_REFUSED = frozenset("!\"#&'(),;<=>[]^`{}~")


def hydra_reads_unquoted(char: str) -> bool:
    printable = char.isprintable() or char == "\t"  # Hydra's blanks are spaces and tabs
    return char.isascii() and printable and char not in HYDRA_REFUSED


# `stopping:` keys and their defaults (MedianStopping's); `rule: none` (or
# `stopping: false`) turns off the decorator's rule for the job.
STOPPING_RULES = ("median", "none")
STOPPING_DEFAULTS: dict[str, Any] = {"direction": "min", "warmup_steps": 0, "min_runs": 3}
STOPPING_KEYS = ("rule", *STOPPING_DEFAULTS)


def read_stopping(value: Any, file: str, where: str) -> dict[str, Any] | None:
    """The job's stopping rule, every key filled in: `{rule: median,
    direction: min, warmup_steps: 2, min_runs: 3}`, or `{rule: none}`."""
    if value is None:
        return None
    if value is False:
        return {"rule": "none"}
    if not isinstance(value, dict):
        message = "must be a mapping (rule, direction, warmup_steps, min_runs) or false"
        raise ConfigError(file, where, message)
    check_keys(value, STOPPING_KEYS, file, where)
    rule = value.get("rule", "median")
    if rule not in STOPPING_RULES:
        raise ConfigError(file, f"{where}.rule", f"must be median or none, not {rule!r}")
    if rule == "none":
        if len(value) > 1:
            raise ConfigError(file, where, "rule: none takes no other keys")
        return {"rule": "none"}
    settings = {"rule": rule, **STOPPING_DEFAULTS, **value}
    if settings["direction"] not in ("min", "max"):
        message = f"must be min or max, not {settings['direction']!r}"
        raise ConfigError(file, f"{where}.direction", message)
    for key, least in (("warmup_steps", 0), ("min_runs", 1)):
        number = settings[key]
        if not isinstance(number, int) or isinstance(number, bool) or number < least:
            message = f"must be a whole number >= {least}, not {number!r}"
            raise ConfigError(file, f"{where}.{key}", message)
    return settings


def read_set(body: Any, file: str, where: str) -> JobSet:
    if body is None:  # a bare `-`: a set left unfinished, more likely than meant
        message = "an empty item; write {} for a command without parameters"
        raise ConfigError(file, where, message)
    if not isinstance(body, dict):
        raise ConfigError(file, where, "a set must be a mapping with each, all or add")
    check_keys(body, SET_KEYS, file, where)
    body = without_empty_strings(body)
    fields = {key: read_given_arguments(body, key, file, where) for key in SET_KEYS}
    return JobSet(each=fields["each"], all=fields["all"], add=fields["add"])


def read_given_arguments(body: dict[Any, Any], key: str, file: str, where: str) -> Arguments:
    """`key`'s arguments; a key given with nothing (`each:`, its values
    commented out) is refused: it would silently mean no arguments. An
    explicit `''` is left out before (see `without_empty_strings`), and an
    explicit `[]` is meant (it clears an `add` a YAML merge brought in)."""
    if key in body and body[key] is None:
        message = f"is empty; give it arguments, or leave {key} out"
        raise ConfigError(file, f"{where}.{key}", message)
    return read_arguments(body.get(key), file, f"{where}.{key}")


def read_arguments(value: Any, file: str, where: str) -> Arguments:
    """A string is split as the grammar splits it; a list is one argument per item."""
    if value is None:
        return Arguments((), where)
    if isinstance(value, str):
        try:
            return Arguments(tuple(split(value)), where)
        except SweepSyntaxError as error:
            raise ConfigError(file, where, str(error)) from None
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                kind = type(item).__name__
                message = f"must be a string, not {kind} (quote it: '{as_written(item)}')"
                raise ConfigError(file, f"{where}[{index}]", message)
        return Arguments(tuple(value), where)
    kind = type(value).__name__
    raise ConfigError(file, where, f"must be a string or a list of strings, not {kind}")


def as_written(item: Any) -> str:
    """An item YAML read as something else, as it was most likely written:
    `- seed=1:` is a mapping of one key."""
    if isinstance(item, dict) and len(item) == 1:
        [(key, value)] = item.items()
        return f"{key}:" if value is None else f"{key}: {value}"
    return str(item)


def check_keys(body: dict[Any, Any], allowed: tuple[str, ...], file: str, where: str) -> None:
    for key in body:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(file, path, f"unknown key '{key}'{suggestion(str(key), allowed)}")


def suggestion(word: str, choices: tuple[str, ...] | list[str]) -> str:
    meant = closest(word, choices)
    if meant is not None:
        return f"; did you mean '{meant}'?"
    return f" (expected one of: {', '.join(choices)})"
