"""From a job to its commands: shape, overrides, `add` merging, laziness."""

from __future__ import annotations

import re
import shlex
import tracemalloc
from pathlib import Path

import pytest
from hydraflow.errors import ConfigError, HydraflowError
from hydraflow.runner.executors import executor_for
from hydraflow.runner.jobs import Arguments, Job, JobSet, load_jobs
from hydraflow.runner.plan import CommandLine, plan_job
from hypothesis import given, settings
from hypothesis import strategies as st

ULID = r"[0-9A-HJKMNP-TV-Z]{26}"


def job(tmp_path: Path, text: str, name: str = "j") -> Job:
    (tmp_path / "hydraflow.yaml").write_text(text)
    return load_jobs(tmp_path / "hydraflow.yaml").jobs[name]


def commands(j: Job, *args: str, verbatim: tuple[str, ...] = ()) -> list[list[str]]:
    plan = plan_job(j, CommandLine.parse(args, verbatim))
    return [c.argv for c in plan.commands()]


def without_dirs(argvs: list[list[str]]) -> list[str]:
    return [re.sub(f"hydra.sweep.dir=multirun/{ULID}", "DIR", " ".join(a)) for a in argvs]


SEQUENTIAL = """
jobs:
  j:
    run: python example.py
    add: hydra/launcher=joblib hydra.launcher.n_jobs=3
    sets:
      - each: width=100,300
        all: height=100:300:100
"""


def test_command_shape(tmp_path: Path) -> None:
    argvs = commands(job(tmp_path, SEQUENTIAL))
    assert without_dirs(argvs) == [
        "python example.py --multirun width=100 height=100,200,300 hydra.job.name=j DIR "
        "hydra/launcher=joblib hydra.launcher.n_jobs=3",
        "python example.py --multirun width=300 height=100,200,300 hydra.job.name=j DIR "
        "hydra/launcher=joblib hydra.launcher.n_jobs=3",
    ]


def test_sweep_dirs_are_unique_and_time_ordered(tmp_path: Path) -> None:
    argvs = commands(job(tmp_path, SEQUENTIAL))
    dirs = [a[6] for a in argvs]
    assert all(re.fullmatch(f"hydra.sweep.dir=multirun/{ULID}", d) for d in dirs)
    assert dirs == sorted(dirs)
    assert len(set(dirs)) == len(dirs)
    again = [a[6] for a in commands(job(tmp_path, SEQUENTIAL))]
    assert again[0] > dirs[-1]


def test_overrides_replace_or_append(tmp_path: Path) -> None:
    j = job(tmp_path, SEQUENTIAL)
    argvs = without_dirs(commands(j, "height=5", "seed=1:3", "hydra.launcher.n_jobs=2"))
    assert argvs == [
        "python example.py --multirun width=100 height=5 seed=1,2,3 hydra.job.name=j DIR "
        "hydra/launcher=joblib hydra.launcher.n_jobs=2",
        "python example.py --multirun width=300 height=5 seed=1,2,3 hydra.job.name=j DIR "
        "hydra/launcher=joblib hydra.launcher.n_jobs=2",
    ]


def test_overriding_an_each_key_runs_identical_commands_once(tmp_path: Path) -> None:
    argvs = commands(job(tmp_path, SEQUENTIAL), "width=7")
    assert len(argvs) == 1
    assert argvs[0][3] == "width=7"
    plan = plan_job(job(tmp_path, SEQUENTIAL), CommandLine.parse(["width=7"]))
    assert (plan.total_commands, plan.total_runs) == (1, 3)


@pytest.mark.parametrize("override", ["++width=7", "+width=7"])
def test_a_plus_override_replaces_the_sets_key_as_a_plain_one_does(
    tmp_path: Path, override: str
) -> None:
    """`++width=7` beside the set's `width=100` made `width=100 ++width=7`:
    two commands Hydra ran both with width 7."""
    argvs = commands(job(tmp_path, SEQUENTIAL), override)
    assert len(argvs) == 1
    assert argvs[0][3] == override


def test_options_go_before_multirun_and_other_arguments_after_the_jobs(tmp_path: Path) -> None:
    """Hydra's parser takes its overrides as one run of words: a word before
    `--multirun` and more after it is an error (`unrecognized arguments`)."""
    argvs = commands(
        job(tmp_path, SEQUENTIAL), "--config-name", "big", verbatim=("a=1", "--x=1", "b=2")
    )
    head = ["python", "example.py", "--config-name", "big", "--x=1", "--multirun"]
    assert argvs[0][:6] == head
    assert argvs[0][-2:] == ["a=1", "b=2"]


def test_a_programs_option_keeps_its_value_and_hydras_flags_take_none() -> None:
    line = CommandLine.parse([], ["--fail-if", "a=1:3", "--resolve", "b=1", "-m", "c=2"])
    assert line.extra == ("--fail-if", "a=1:3", "--resolve", "-m")
    assert line.trailing == ("b=1", "c=2")


def test_a_hydra_mode_beside_multirun_is_refused() -> None:
    for args in (["--cfg", "job"], ["-c", "all"], ["--info"], ["--run"], ["-sc=install"]):
        with pytest.raises(HydraflowError, match="cannot go with --multirun"):
            CommandLine.parse([], args)


def test_set_add_overrides_job_add_in_place(tmp_path: Path) -> None:
    text = """
jobs:
  j:
    run: app
    add: a=1 b=2 --flag
    sets:
      - add: b=3 c=4
"""
    [argv] = commands(job(tmp_path, text))
    assert argv[-4:] == ["a=1", "b=3", "--flag", "c=4"]


def test_user_named_job_and_sweep_dir_are_kept(tmp_path: Path) -> None:
    text = """
jobs:
  j:
    run: app
    sets:
      - all: hydra.job.name=mine
      - add: hydra.sweep.dir=out
"""
    first, second = commands(job(tmp_path, text))
    assert first[2:4] == ["hydra.job.name=mine", first[3]]
    assert first[3].startswith("hydra.sweep.dir=multirun/")
    assert second == ["app", "--multirun", "hydra.job.name=j", "hydra.sweep.dir=out"]


def test_job_without_sets_runs_once(tmp_path: Path) -> None:
    argvs = commands(job(tmp_path, "jobs:\n  j:\n    run: app --x\n"))
    assert without_dirs(argvs) == ["app --x --multirun hydra.job.name=j DIR"]


def test_lists_are_one_argument_per_item(tmp_path: Path) -> None:
    text = """
jobs:
  j:
    run: app
    sets:
      - each: [name=hello world, "n=1,2"]
"""
    argvs = commands(job(tmp_path, text))
    assert [a[2:4] for a in argvs] == [["name=hello world", "n=1"], ["name=hello world", "n=2"]]


def test_pipes_and_several_sets_count_runs(tmp_path: Path) -> None:
    text = """
jobs:
  j:
    run: app
    sets:
      - each: model=a,b|lr=1:3 seed=1,2
        all: x=1:4
      - each: y=1
"""
    plan = plan_job(job(tmp_path, text))
    assert plan.total_commands == 5
    assert plan.total_runs == (2 * 4 + 3 * 4) * 2 + 1
    assert [c.runs for c in plan.commands()] == [8, 8, 12, 12, 1]


def test_a_million_commands_stay_lazy(tmp_path: Path) -> None:
    text = (
        "jobs:\n  j:\n    run: app\n    sets:\n"
        "      - each: a=1:1000 b=1:1000\n        all: c=1:3\n"
    )
    tracemalloc.start()
    plan = plan_job(job(tmp_path, text))
    assert (plan.total_commands, plan.total_runs) == (10**6, 3 * 10**6)
    lines = plan.shell_lines()
    for _ in range(100_000):
        next(lines)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20


def test_call_head_is_the_arguments(tmp_path: Path) -> None:
    call_job = job(tmp_path, "jobs:\n  j:\n    call: mod.fn --x 1\n")
    assert executor_for(call_job).plan(call_job).head == ("--x", "1")


@pytest.mark.parametrize(
    ("sweep", "runs"),
    [
        ("all: a=range(1,5) b=choice(x,y,z)", None),  # Hydra runs 12; only Hydra knows
        ("all: a=1:4 b=x,y,z", 12),
        ("each: a=choice(x,y)", None),
        ("all: a=interval(0,1)", None),
        ("all: a='range(1,5)'", 1),  # quoted: a string to Hydra
        ("all: a=int(3)", 1),  # a cast is one value
    ],
)
def test_hydra_sweep_functions_make_run_counts_unknown(
    tmp_path: Path, sweep: str, runs: int | None
) -> None:
    plan = plan_job(job(tmp_path, f"jobs:\n  j:\n    run: app\n    sets:\n      - {sweep}\n"))
    assert plan.total_runs == runs
    assert all(c.runs == runs for c in plan.commands())


pieces = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=12
)


SWEEPS = ["a=1,2", "b='x y'", 'c="it\'s"', "d=[1, 2]", "e={k: v}", "f=$x;`y`", "g=é,ü"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(pieces, min_size=1, max_size=3),
    st.lists(pieces, max_size=3),
    st.lists(st.sampled_from(SWEEPS), max_size=3, unique=True),
)
def test_shell_line_and_argv_are_one_layout(
    program: list[str], extra: list[str], sweeps: list[str]
) -> None:
    """The dry-run line and the argv come from one layout: the shell reads
    the line back as exactly the argv, whatever the words hold."""
    each = Arguments(tuple(sweeps[:1]), "jobs.j.sets[0].each")
    rest = Arguments(tuple(sweeps[1:]), "jobs.j.sets[0].all")
    empty = Arguments((), "jobs.j.add")
    j = Job("j", "run", "app", empty, (JobSet(each, rest, empty),), "hydraflow.yaml", "j")
    plan = plan_job(j, CommandLine(extra=tuple(extra)), program=program)
    for line, command in zip(plan.shell_lines(), plan.commands(), strict=True):
        assert same_dirs(shlex.split(line)) == same_dirs(command.argv)
        assert shlex.split(command.line) == command.argv


def same_dirs(argv: list[str]) -> list[str]:
    """Each rendering draws its own fresh sweep dir: compare all else."""
    return [re.sub(f"multirun/{ULID}", "multirun/DIR", arg) for arg in argv]


def test_bad_command_line_quoting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"jobs\.j\.run"):
        plan_job(job(tmp_path, "jobs:\n  j:\n    run: app 'x\n"))


def test_bad_override(tmp_path: Path) -> None:
    with pytest.raises(HydraflowError, match="command line"):
        CommandLine.parse(["a=1,,2"])


@pytest.mark.parametrize(
    ("sets", "where", "message"),
    [
        ("- each: model=cnn\n        all: model=mlp", "sets[0].all", "also in jobs.j.sets[0].each"),
        ("- each: model=cnn,vit model=mlp", "sets[0].each", "twice"),
        ("- all: epochs=1,2", "j.add", "also in jobs.j.sets[0].all"),
        ("- each: a=1|lr=1,2\n        add: lr=3", "sets[0].add", "also in jobs.j.sets[0].each"),
        ("- all: lr/m=1,2 lr=0.5", "sets[0].all", "twice"),
        # `+key` adds the key `key` sets: Hydra keeps the last of `+n=1 n=3`.
        ("- each: +epochs=1,2", "j.add", "also in jobs.j.sets[0].each"),
        ("- all: ++lr=0.1 lr=0.5", "sets[0].all", "twice"),
    ],
)
def test_a_key_a_command_would_give_twice_is_refused(
    tmp_path: Path, sets: str, where: str, message: str
) -> None:
    """Hydra keeps a repeated key's last value without a word: the runs and
    the counts shown would differ from the file."""
    text = f"jobs:\n  j:\n    run: app\n    add: epochs=3\n    sets:\n      {sets}\n"
    with pytest.raises(ConfigError) as error:
        plan_job(job(tmp_path, text))
    key = re.search(r"'(\w+)' is given", str(error.value))
    assert key is not None
    assert f"{where}: '{key[1]}' is given {message}; Hydra would keep only its last value" in str(
        error.value
    )


def test_a_sets_add_replaces_the_jobs_and_an_override_every_occurrence(tmp_path: Path) -> None:
    """Not repeats: the set's `add` wins over the job's (documented), and a
    command-line override replaces its key wherever the file gives it."""
    text = (
        "jobs:\n  j:\n    run: app\n    add: a=1\n    sets:\n      - all: b=1,2\n        add: a=2\n"
    )
    [argv] = commands(job(tmp_path, text), "b=5", "a=3")
    assert without_dirs([argv]) == ["app --multirun b=5 hydra.job.name=j DIR a=3"]


SWEEPER_JOB = """
jobs:
  j:
    run: python app.py
    add: hydra.sweeper.n_trials=4
    sets:
      - each: model=a,b
        all: x=interval(0,1)
"""


@pytest.mark.parametrize(
    ("args", "described"),
    [
        # Optuna (chosen in the app's config) runs n_trials per command.
        ((), "8 runs (n_trials)"),
        (("hydra.sweeper.n_trials=6",), "12 runs (n_trials)"),
        (("hydra/sweeper=optuna",), "8 runs (n_trials)"),
        # Another sweeper's budget is its own; trials that vary are not summed.
        (("hydra/sweeper=nevergrad",), "runs decided by the sweeper"),
        (("hydra.sweeper.n_trials=2,3",), "runs decided by the sweeper"),
        (("hydra.sweeper.n_trials=${n}",), "runs decided by the sweeper"),
    ],
)
def test_a_sweepers_runs_are_its_trials_or_its_own_decision(
    tmp_path: Path, args: tuple[str, ...], described: str
) -> None:
    plan = plan_job(job(tmp_path, SWEEPER_JOB), CommandLine.parse(args))
    assert plan.runs_described() == described
    # The runner counts them as they come: never proven finished in advance.
    assert plan.total_runs is None
    assert {command.runs for command in plan.commands()} == {None}


def test_a_grid_says_its_count_and_hydra_functions_say_who_decides(tmp_path: Path) -> None:
    text = "jobs:\n  j:\n    run: python app.py\n    sets:\n      - all: a=1,2\n"
    plan = plan_job(job(tmp_path, text), CommandLine())
    assert (plan.runs_described(), plan.total_runs) == ("2 runs", 2)
    plan = plan_job(job(tmp_path, text), CommandLine.parse(["b=glob(*)"]))
    assert plan.runs_described() == "runs decided by Hydra's glob()"
    # The grammar reads `sort(3,1)` as one value; Hydra sweeps its two.
    plan = plan_job(job(tmp_path, text), CommandLine.parse(["b=sort(3,1)", "c=shuffle(1,2)"]))
    assert plan.runs_described() == "runs decided by Hydra's sort(), shuffle()"
