"""The published HydraFlow's values for config keys whose types clash.

STATEMENTS are calls of the published API (`Run.load` of run folders,
`to_list`, `filter`, `sort`, `group_by`, `to_frame`) on the runs of
tests/test_types.py's store, each giving an order-free value (the published
tool lists a folder's runs in the file system's order). As a script, run by
the published HydraFlow's Python in that store's folder, it prints each
statement's repr as JSON: the oracle PUBLISHED below.

    /work/published/.venv/bin/python tests/published_types.py FOLDER

The published 0.23.2 cannot open a store of a newer MLflow, so the run
folders come from the store's `experiments` table here (`dirs`), the same
for both tools. Measured on 2026-12-07 with hydraflow 0.23.2 (CPython 3.13,
polars 2.1.0, MLflow 3.17.2); not edited by hand.
"""

# ruff: noqa: E501 (the statements are lines of code, one a line)

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any


def dirs(*names: str) -> list[Path]:
    """The run folders of the named experiments, sorted."""
    with sqlite3.connect("mlflow.db") as db:
        ids = [
            i for i, n in db.execute("SELECT experiment_id, name FROM experiments") if n in names
        ]
    return sorted(
        p for i in ids for p in Path("mlruns", str(i)).iterdir() if (p / "artifacts").is_dir()
    )


def kinds(values: list[Any]) -> list[tuple[str, str]]:
    """Each value's kind and repr, sorted (an OmegaConf list is a list)."""
    return sorted(
        ("list" if type(v).__name__ == "ListConfig" else type(v).__name__, repr(v)) for v in values
    )


STATEMENTS = [
    'kinds(rc("C").to_list("warmup"))',
    'kinds(rc("D").to_list("layers"))',
    'kinds(rc("V").to_list("v"))',
    'kinds(rc("P").to_list("x"))',
    'kinds(rc("R").to_list("x"))',
    'kinds(rc("A").to_list("x"))',
    'kinds(rc("A", "B").to_list("x"))',
    '[len(rc("C").filter(warmup=w)) for w in (True, False, 500, 1, 0)]',
    '[len(rc("V").filter(v=w)) for w in ("abc", 1, True, 2.5, [1, 2])]',
    '[len(rc(e).filter(x="a")) for e in ("P", "R", "B")]',
    'len(rc("D").filter(layers="auto"))',
    'rc("A", "B").sort("x").to_list("x")',
    'rc("A").sort("x", reverse=True).to_list("x")',
    'sorted((repr(k), len(g)) for k, g in rc("A", "B").group_by("x").items())',
    'sorted((repr(k), len(g)) for k, g in rc("C").group_by("warmup").items())',
    '[(k, str(v)) for k, v in rc("A").to_frame("x").schema.items()], sorted(rc("A").to_frame("x")["x"].to_list())',
    'sorted(map(repr, rc("P").to_frame("x")["x"].to_list()))',
]


def evaluate(folder: Path, namespace: dict[str, Any]) -> list[str]:
    """Each statement's repr, run in `folder` (`error: TYPE` for an exception)."""
    os.chdir(folder)
    found = []
    for statement in STATEMENTS:
        try:
            found.append(repr(eval(statement, namespace)))
        except Exception as error:
            found.append(f"error: {type(error).__name__}")
    return found


def namespace(run: Any) -> dict[str, Any]:
    return {"rc": lambda *names: run.load(dirs(*names)), "kinds": kinds}


if __name__ == "__main__":
    import warnings

    from hydraflow import Run

    warnings.simplefilter("ignore")
    print(json.dumps(evaluate(Path(sys.argv[1]), namespace(Run)), indent=1))


# What the published tool gave for each of STATEMENTS.
PUBLISHED = [
    "[('bool', 'False'), ('bool', 'True'), ('int', '500')]",
    "[('list', '[64, 64]'), ('str', \"'auto'\")]",
    "[('bool', 'True'), ('float', '2.5'), ('int', '1'), ('list', '[1, 2]'), ('str', \"'abc'\")]",
    "[('int', '1'), ('str', \"'a'\")]",
    "[('int', '1'), ('str', \"'a'\")]",
    "[('int', '1'), ('int', '2')]",
    "[('int', '1'), ('int', '2'), ('str', \"'a'\")]",
    "[1, 1, 1, 1, 1]",
    "[1, 2, 2, 1, 3]",
    "[1, 1, 1]",
    "1",
    "[1, 2, 'a']",
    "[2, 1]",
    "[(\"'a'\", 1), ('1', 1), ('2', 1)]",
    "[('500', 1), ('False', 1), ('True', 1)]",
    "([('x', 'Int64')], [1, 2])",
    "error: TypeError",
]
