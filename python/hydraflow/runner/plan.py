"""From a job to the commands it runs.

For every set, in order, and every combination of its `each`, one command:

    COMMAND [OPTIONS] --multirun EACH... ALL...
        hydra.job.name=JOB hydra.sweep.dir=multirun/ULID ADD... [TRAILING]

Each set keeps only its distinct values; commands are generated one at a
time, so a job of a million commands never holds them all.
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hydraflow._core import SweepSyntaxError, collect, count, expand, ulid, ulids
from hydraflow.errors import ConfigError, HydraflowError
from hydraflow.runner.jobs import Arguments, Job, JobSet
from hydraflow.tables import counted

JOB_NAME_KEY = "hydra.job.name"
SWEEP_DIR_KEY = "hydra.sweep.dir"
SWEEP_ROOT = "multirun"
# Dry-run lines are made this many at a time (one call for their ULIDs).
LINES_PER_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a job: `head` (the program and extra arguments), then `params`.

    `runs` is how many runs Hydra makes of it, None when hydraflow cannot know
    (a Hydra sweep function such as `choice(...)` in a value)."""

    index: int
    head: tuple[str, ...]
    params: list[str]
    runs: int | None

    @property
    def argv(self) -> list[str]:
        return [*self.head, *self.params]

    @property
    def line(self) -> str:
        """The argv as one copy-pasteable shell line (`shlex.split` gives it back)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class CommandLine:
    """What the user typed after the job name: overrides, the program's options
    (`extra`, before `--multirun`) and its other arguments (`trailing`, after
    the job's own: Hydra's parser takes its overrides as one run of words)."""

    overrides: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    trailing: tuple[str, ...] = ()

    @classmethod
    def parse(cls, args: Sequence[str], verbatim: Sequence[str] = ()) -> CommandLine:
        """`KEY=VALUES` (and `~KEY`) are overrides; anything else passes through.

        `verbatim` (what followed `--`) always passes through. Raises
        HydraflowError for an option Hydra refuses beside `--multirun`.
        """
        overrides: list[str] = []
        rest: list[str] = []
        for arg in args:
            if is_override(arg):
                overrides.append(collected_override(arg))
            else:
                rest.append(arg)
        refuse_a_key_twice([arg for arg in args if is_override(arg)], overrides)
        options, trailing = options_and_trailing([*rest, *verbatim])
        return cls(tuple(overrides), tuple(options), tuple(trailing))


def refuse_a_key_twice(typed: Sequence[str], overrides: Sequence[str]) -> None:
    """`seed=1 seed=2` would replace a job's seed by the last alone, and give
    a set without seed both (Hydra keeps the last): refused, as in the jobs
    file. `+seed` and `++seed` assign seed too; `~seed` (delete) assigns
    nothing. Keys are compared collected (`lr/m=1` sets lr), shown as typed."""
    seen: dict[str, str] = {}
    for arg, override in zip(typed, overrides, strict=True):
        if override.startswith("~"):
            continue
        key = set_key(override)
        if key in seen:
            message = (
                f"command line: '{key}' is given twice ({seen[key]} and {arg}); give it "
                f"once (one argument sweeps several values: {key}=a,b)"
            )
            raise HydraflowError(message)
        seen[key] = arg


# Hydra runs these instead of a sweep and refuses them beside `--multirun`,
# which every command of a job has.
HYDRA_MODES = frozenset(
    {"--cfg", "-c", "--info", "-i", "--run", "-r", "--shell-completion", "-sc"}
    | {"--experimental-rerun"}
)


# Hydra's options that take no value; the word after one trails.
HYDRA_FLAGS = frozenset(
    {"--multirun", "-m", "--resolve", "--help", "-h", "--hydra-help", "--version"}
)


def options_and_trailing(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Options stay together, each with the word after it as its value
    (`--config-name big`, a program's `--fail-if a=1`) unless it is one of
    Hydra's flags or is written `--name=value`; the other words trail."""
    options: list[str] = []
    trailing: list[str] = []
    taking_value = False
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in HYDRA_MODES:
            raise HydraflowError(
                f"command line: {name} cannot go with --multirun, which every command of a "
                "job runs (Hydra refuses the two together); to see what a command would do, "
                "`--dry-run` prints it"
            )
        if arg.startswith("-") and len(arg) > 1:
            options.append(arg)
            taking_value = "=" not in arg and arg not in HYDRA_FLAGS
        elif taking_value:
            options.append(arg)
            taking_value = False
        else:
            trailing.append(arg)
    return options, trailing


def is_override(arg: str) -> bool:
    return arg.startswith("~") or ("=" in arg and not arg.startswith(("-", "=")))


def collected_override(arg: str) -> str:
    try:
        [override] = collect([arg])
    except SweepSyntaxError as error:
        raise HydraflowError(f"command line: {error}") from None
    return override


def key_of(arg: str) -> str:
    """The key an argument sets: the text before `=`, or the whole flag."""
    return arg.split("=", 1)[0]


def set_key(arg: str) -> str:
    """The config key an override sets, without Hydra's `+`/`++` (add, force-add)."""
    return key_of(arg).lstrip("+")


# Hydra's sweep functions: a value holding one makes a number of runs that
# only Hydra knows (glob depends on the config, range on float steps; sort,
# shuffle and tag wrap a sweep whose values the grammar reads as one).
HYDRA_SWEEPS = re.compile(r"(?:^|[=,(\s])(range|choice|interval|glob|sort|shuffle|tag)\s*\(")
# Optuna's number of trials: exactly the runs its sweeper makes of a command.
TRIALS_KEY = "hydra.sweeper.n_trials"
# Keys that only a sweeper other than Hydra's basic one has (Optuna's,
# Nevergrad's, Ax's budgets): beside one, that sweeper (chosen in the app's
# config if not on the command line) decides the runs, whatever the values say.
SWEEPER_KEYS = frozenset(
    {TRIALS_KEY, "hydra.sweeper.optim.budget", "hydra.sweeper.ax_config.max_trials"}
)


def value_count(arg: str) -> int | None:
    """How many runs an override makes inside one Hydra multirun (None: unknown)."""
    if "=" not in arg or arg.startswith("-"):
        return 1
    name, value = arg.split("=", 1)
    if HYDRA_SWEEPS.search(value) or chooses_a_sweeper(name, value):
        return None
    try:
        return count([arg])
    except SweepSyntaxError:
        return None


def chooses_a_sweeper(name: str, value: str) -> bool:
    """Another sweeper than Hydra's basic one makes as many runs as it decides
    (Optuna's `n_trials`), whatever the values say."""
    key = name.lstrip("+")
    return (key == "hydra/sweeper" and value.strip() != "basic") or key in SWEEPER_KEYS


def trials_of(args: Iterable[str]) -> int | None:
    """The runs of one command whose sweeper is Optuna's and `n_trials` is
    given (Optuna runs exactly that many); None for any other sweeper."""
    pairs = [arg.lstrip("+").split("=", 1) for arg in args if "=" in arg and is_override(arg)]
    values = dict(pairs)
    if values.get("hydra/sweeper", "optuna").strip() != "optuna":
        return None
    trials = values.get(TRIALS_KEY, "").strip()
    return int(trials) if trials.isdigit() else None


def who_decides(args: Iterable[str]) -> list[str]:
    """What decides the runs of a set hydraflow cannot count: the sweeper,
    or else the Hydra sweep functions its values hold (`range()`)."""
    pairs = [arg.split("=", 1) for arg in args if "=" in arg and is_override(arg)]
    if any(chooses_a_sweeper(name, value) for name, value in pairs):
        return ["the sweeper"]
    functions = dict.fromkeys(m for _, value in pairs for m in HYDRA_SWEEPS.findall(value))
    return [f"{name}()" for name in functions]


def product(counts: Iterable[int | None]) -> int | None:
    """The product of run counts; unknown if any factor is unknown."""
    total = 1
    for factor in counts:
        if factor is None:
            return None
        total *= factor
    return total


def summed(counts: Iterable[int | None]) -> int | None:
    """The sum of run counts; unknown if any term is unknown."""
    total = 0
    for term in counts:
        if term is None:
            return None
        total += term
    return total


def layout(
    each: Sequence[str],
    all_args: Sequence[str],
    job_name: Sequence[str],
    sweep_dir: Sequence[str],
    add: Sequence[str],
) -> list[str]:
    """The one place the parameters' order is written, for argv and for the
    shell line alike (the line lays out the same pieces, quoted)."""
    return ["--multirun", *each, *all_args, *job_name, *sweep_dir, *add]


@dataclass(frozen=True)
class RunCount:
    """A set's runs as a person is told them: counted (`by_trials` when
    Optuna's `n_trials` gave the count), or None and who decides them."""

    runs: int | None
    by_trials: bool = False
    deciders: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetPlan:
    """One set with the command line applied: its distinct values, ready to combine."""

    each: list[list[str]]
    all: list[str]
    add: list[str]
    job_name: list[str]
    sweep_dir: bool
    fixed_runs: int | None
    runs_of: dict[str, int | None]
    where: str

    @property
    def commands(self) -> int:
        return math.prod(len(options) for options in self.each)

    @property
    def runs(self) -> int | None:
        per_argument = [summed(self.runs_of[o] for o in options) for options in self.each]
        return product([self.fixed_runs, *per_argument])

    def runs_counted(self) -> RunCount:
        """For a person: the runs as counted, by Optuna's `n_trials` if they
        give it, and else what decides them."""
        if self.runs is not None:
            return RunCount(self.runs)
        varied = set(itertools.chain.from_iterable(self.each))
        trials = trials_of([*self.all, *self.add])
        if trials is not None and not any(key_of(o).lstrip("+") == TRIALS_KEY for o in varied):
            return RunCount(self.commands * trials, by_trials=True)
        return RunCount(None, deciders=tuple(who_decides([*varied, *self.all, *self.add])))

    def runs_of_combination(self, combination: tuple[str, ...]) -> int | None:
        return product([self.fixed_runs, *(self.runs_of[o] for o in combination)])

    def sweep_dirs(self) -> Iterator[list[str]]:
        """A fresh `hydra.sweep.dir=multirun/ULID` per command (or none if the user set it)."""
        while True:
            yield [f"{SWEEP_DIR_KEY}={SWEEP_ROOT}/{ulid()}"] if self.sweep_dir else []

    def params(self) -> Iterator[tuple[list[str], int | None]]:
        combinations = itertools.product(*self.each)
        for combination, sweep_dir in zip(combinations, self.sweep_dirs(), strict=False):
            params = layout(combination, self.all, self.job_name, sweep_dir, self.add)
            yield params, self.runs_of_combination(combination)

    def shell_lines(self, head: str, *, masking: bool = False) -> Iterator[str]:
        """`shlex.join(head + params)` per command, fast: the line is laid out
        once as a template (every fixed piece quoted once), and each command
        only fills in its combination and its ULID (which never needs quoting).
        `masking`: passwords as `***` (see `shown_quote`)."""
        quote = shown_quote if masking else shlex.quote
        quoted = [[quote(arg).replace("%", "%%") for arg in options] for options in self.each]
        slots = ["%s"] * len(self.each)
        sweep_dir = [f"{SWEEP_DIR_KEY}={SWEEP_ROOT}/%s"] if self.sweep_dir else []
        all_args, job_name, add = (
            [quote(a).replace("%", "%%") for a in part]
            for part in (self.all, self.job_name, self.add)
        )
        start = [head.replace("%", "%%")] if head else []
        template = " ".join([*start, *layout(slots, all_args, job_name, sweep_dir, add)])
        combinations = itertools.product(*quoted)
        if not self.sweep_dir:
            yield from (template % combination for combination in combinations)
            return
        while batch := list(itertools.islice(combinations, LINES_PER_BATCH)):
            stamps = ulids(len(batch))
            yield from [template % (*c, stamp) for c, stamp in zip(batch, stamps, strict=True)]

    def largest_argv(self, head: Sequence[str]) -> list[str]:
        """An argv as large as any this set makes: the longest option of each
        `each` argument, the fixed arguments and a sweep dir of the same size."""
        longest = [max(options, key=len) for options in self.each if options]
        sweep_dir = [f"{SWEEP_DIR_KEY}={SWEEP_ROOT}/{ulid()}"] if self.sweep_dir else []
        return [*head, *layout(longest, self.all, self.job_name, sweep_dir, self.add)]


@dataclass(frozen=True)
class JobPlan:
    job: Job
    head: tuple[str, ...]
    sets: list[SetPlan]

    @property
    def total_commands(self) -> int:
        return sum(s.commands for s in self.sets)

    @property
    def total_runs(self) -> int | None:
        return summed(s.runs for s in self.sets)

    def runs_described(self) -> str:
        """The runs for a person, never a bare `?`: `6 runs`; `8 runs
        (n_trials)` when Optuna's trials give the count; `runs decided by the
        sweeper` (or by Hydra's sweep functions) when nothing does."""
        counts = [job_set.runs_counted() for job_set in self.sets]
        known = sum(count.runs or 0 for count in counts)
        by_trials = " (n_trials)" if any(count.by_trials for count in counts) else ""
        deciders = list(dict.fromkeys(who for count in counts for who in count.deciders))
        if not deciders:
            return counted(known, "run") + by_trials
        sweeper = [who for who in deciders if not who.endswith("()")]
        functions = [who for who in deciders if who.endswith("()")]
        if functions:
            sweeper.append(f"Hydra's {', '.join(functions)}")
        decided = f"runs decided by {' and '.join(sweeper or ['Hydra'])}"
        if any(count.runs is not None for count in counts):
            return f"{counted(known, 'run')}{by_trials} + {decided}"
        return decided

    def shell_lines(self, *, with_head: bool = True, masking: bool = False) -> Iterator[str]:
        quote = shown_quote if masking else shlex.quote
        head = " ".join(quote(arg) for arg in self.head) if with_head else ""
        for job_set in self.sets:
            yield from job_set.shell_lines(head, masking=masking)

    def commands(self) -> Iterator[Command]:
        index = 0
        for job_set in self.sets:
            for params, runs in job_set.params():
                index += 1
                yield Command(index, self.head, params, runs)


def shown_quote(arg: str) -> str:
    """An argument quoted for a shell, as printed for a person: a password in
    a URI or in a key named so (`db.password=x`) as `***`, as the failure
    line of a real run shows it. Masked once per distinct argument, not per line."""
    from hydraflow.remote import masked

    return masked(shlex.quote(arg))


def plan_job(
    job: Job, command_line: CommandLine = CommandLine(), *, program: Sequence[str] | None = None
) -> JobPlan:
    """Applies the grammar and the command line to every set; raises ConfigError.

    `program` is what comes before the parameters (the executor knows it for
    its kind of job); by default the job's command, split as a shell would."""
    if program is None:
        program = command_words(job)
    head = (*program, *command_line.extra)
    sets = [plan_set(job, job_set, command_line) for job_set in job.sets]
    return JobPlan(job, head, sets)


def command_words(job: Job) -> list[str]:
    """The job's command split as a shell would; raises ConfigError."""
    try:
        return shlex.split(job.command)
    except ValueError as error:
        raise ConfigError(job.file, f"jobs.{job.name}.{job.kind}", str(error)) from None


def plan_set(job: Job, job_set: JobSet, command_line: CommandLine) -> SetPlan:
    overrides = command_line.overrides
    # `++a=5` (or `+a=5`) replaces the set's `a` as `a=5` does: Hydra keeps the last.
    replacements = {set_key(o): o for o in overrides}
    used: set[str] = set()

    def replace(args: list[str]) -> list[str]:
        replaced = []
        for arg in args:
            key = set_key(arg)
            if key in replacements:
                used.add(key)
                arg = replacements[key]
            if arg not in replaced:
                replaced.append(arg)
        return replaced

    written_each = alternatives(job, job_set.each)
    written_all = collected(job, job_set.all)
    written_add = merged_add(job, job.add, job_set.add)
    check_each_key_once(job, job_set, written_each, written_all, written_add)
    each = [replace(options) for options in written_each]
    all_args = replace(written_all)
    add = [*replace(written_add), *command_line.trailing]
    all_args += [o for o in overrides if set_key(o) not in used]
    keys = {key_of(a).lstrip("+") for a in [*itertools.chain.from_iterable(each), *all_args, *add]}
    job_name = [] if JOB_NAME_KEY in keys else [f"{JOB_NAME_KEY}={job.experiment}"]
    runs_of = {option: value_count(option) for options in each for option in options}
    fixed_runs = product(value_count(arg) for arg in [*all_args, *add])
    where = job_set.each.where.rsplit(".", 1)[0]
    return SetPlan(
        each, all_args, add, job_name, SWEEP_DIR_KEY not in keys, fixed_runs, runs_of, where
    )


def check_each_key_once(
    job: Job, job_set: JobSet, each: list[list[str]], all_args: list[str], add: list[str]
) -> None:
    """Refuses a key a set's commands would give twice: Hydra silently keeps
    the last value, so the runs would differ from the file and its counts
    (`each: model=cnn` with `all: model=mlp` runs mlp alone). `+x` and `++x`
    set the same key as `x` (Hydra keeps the last of `+x=1 x=2`)."""
    set_adds = {key_of(arg) for arg in merged_add(job, Arguments((), ""), job_set.add)}
    placed = [
        *((key, job_set.each.where) for options in each for key in {set_key(o) for o in options}),
        *((set_key(arg), job_set.all.where) for arg in all_args),
        *(
            (set_key(arg), job_set.add.where if key_of(arg) in set_adds else job.add.where)
            for arg in add
            if is_override(arg)
        ),
    ]
    seen: dict[str, str] = {}
    for key, where in placed:
        if key in seen:
            again = "twice" if seen[key] == where else f"also in {seen[key]}"
            message = f"'{key}' is given {again}; Hydra would keep only its last value"
            raise ConfigError(job.file, where, message)
        seen[key] = where


def alternatives(job: Job, each: Arguments) -> list[list[str]]:
    """Each `each` argument's alternatives (distinct values only, never the grid)."""
    result = []
    for arg in each.items:
        try:
            result.append([row[0] for row in expand([arg])])
        except SweepSyntaxError as error:
            raise ConfigError(job.file, each.where, str(in_context(each, error))) from None
    return result


def in_context(args: Arguments, error: SweepSyntaxError) -> SweepSyntaxError:
    """The error as the grammar words it with the arguments around it (`seed:`
    followed by `1`: "did you mean seed=1?"), the argument read alone aside."""
    try:
        count(list(args.items))
    except SweepSyntaxError as with_neighbours:
        return with_neighbours
    return error


def collected(job: Job, args: Arguments) -> list[str]:
    try:
        return collect(list(args.items))
    except SweepSyntaxError as error:
        raise ConfigError(job.file, args.where, str(error)) from None


def merged_add(job: Job, job_add: Arguments, set_add: Arguments) -> list[str]:
    """The job's `add` with the set's: a key the set repeats keeps the set's
    value, in the position where the key first appeared."""
    merged: dict[str, str] = {}
    for args in (job_add, set_add):
        for arg in args.items:
            value = (
                arg if not is_override(arg) else collected(job, Arguments((arg,), args.where))[0]
            )
            merged[key_of(value)] = value
    return list(merged.values())
