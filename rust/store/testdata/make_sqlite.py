"""Writes `tables.db`, the SQLite file `rust/store/tests.rs` reads.

Small pages (512 bytes) so that a few hundred rows make interior pages and
overflow chains; rows deleted (free pages) and a column added after the first
rows. The tests recompute each row's values from its id: keep the two in step.
Run: python rust/store/testdata/make_sqlite.py
"""

import sqlite3
from pathlib import Path

ROWS = 200


def row(i: int) -> tuple[object, ...]:
    return (
        i,
        i - 100,
        (i * 7919) ** 3 - 2**40,
        i + 0.5,
        float(i),
        f"name-{i}",
        "x" * (i * 37 % 1300),
        None if i % 5 == 0 else bytes([i % 256]) * (i % 5),
    )


def main() -> None:
    path = Path(__file__).with_name("tables.db")
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA page_size = 512")
        db.execute(
            "CREATE TABLE t (id INTEGER, small INTEGER, big INTEGER, half REAL, whole REAL,"
            " name TEXT, body TEXT, data BLOB)"
        )
        db.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?)", [row(i) for i in range(ROWS)])
        db.execute("DELETE FROM t WHERE id % 10 = 3")
        db.execute("ALTER TABLE t ADD COLUMN extra TEXT")
        db.executemany(
            "INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?)",
            [(*row(i), f"extra-{i}") for i in range(ROWS, ROWS + 20)],
        )
        db.execute("CREATE TABLE k (key TEXT, value TEXT)")
        keys = ["a.config", "a.choice.db", "a.choice.model", "a.digest", "b", "a.choicex"]
        db.executemany("INSERT INTO k VALUES (?, ?)", [(k, f"v-{k}") for k in keys])
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
