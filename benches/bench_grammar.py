"""Benchmarks of the sweep grammar against CPython's floor for the same output.

Run: make bench   (or: python benches/bench_grammar.py)

Each figure is the best of several runs; the ratio is ours / floor, and the
target is printed beside it. Peak memory of iter_expand is measured with
tracemalloc-free RSS sampling (resource.getrusage) in a child process.
"""

from __future__ import annotations

import gc
import itertools
import subprocess
import sys
import time
from collections.abc import Callable

from hydraflow._core import collect, count, expand, iter_expand

RESULTS: list[tuple[str, str, str, bool]] = []


def best_of(function: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def with_gc_paused(function: Callable[[], object]) -> Callable[[], object]:
    def paused() -> object:
        gc.disable()
        try:
            return function()
        finally:
            gc.enable()

    return paused


def report(name: str, ours: float, floor: float, target: float) -> None:
    ratio = ours / floor
    RESULTS.append(
        (
            name,
            f"{ours * 1e3:9.1f} ms",
            f"{floor * 1e3:9.1f} ms  {ratio:5.2f}x (target <= {target}x)",
            ratio <= target,
        )
    )


def bench_collect() -> None:
    floor = best_of(lambda: ",".join(map(str, range(10**6))))
    report("collect x=0:999999 (10^6 ints)", best_of(lambda: collect("x=0:999999")), floor, 0.3)
    floats = best_of(lambda: collect("x=0:0.999999:0.000001"))
    float_floor = best_of(lambda: ",".join(map(str, (i / 10**6 for i in range(10**6)))))
    report("collect x=0:0.999999:0.000001 (10^6 floats)", floats, float_floor, 1.0)


def bench_expand(name: str, text: str, values: list[list[str]]) -> None:
    floor = best_of(with_gc_paused(lambda: list(map(list, itertools.product(*values)))))
    ours = best_of(lambda: expand(text))
    report(name, ours, floor, 1.2)


def bench_count() -> None:
    text = "a=1:100000 b=1:100000 c=1:100000"
    assert count(text) == 10**15
    ours = best_of(lambda: count(text), repeat=50)
    RESULTS.append(("count of a 10^15 grid", f"{ours * 1e3:9.3f} ms", "target < 1 ms", ours < 1e-3))


ITERATE_CHILD = """
import resource, sys
from hydraflow._core import iter_expand
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
for row in iter_expand("a=1:1000 b=1:100 c=1:100"):
    n += 1
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert n == 10**7, n
print((after - before) / 1024)
"""


def bench_iterate() -> None:
    start = time.perf_counter()
    growth = subprocess.run(
        [sys.executable, "-c", ITERATE_CHILD], check=True, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - start
    megabytes = float(growth)
    RESULTS.append(
        (
            "iter_expand over 10^7 combinations",
            f"{elapsed * 1e3:9.1f} ms",
            f"peak memory growth {megabytes:.1f} MB (target < 20 MB)",
            megabytes < 20,
        )
    )


def main() -> int:
    bench_collect()
    thousand = [f"a={i}" for i in range(1, 1001)], [f"b={i}" for i in range(1, 1001)]
    bench_expand("expand 1000x1000 grid", "a=1:1000 b=1:1000", list(thousand))
    hundred = [[f"{k}={i}" for i in range(1, 101)] for k in "abc"]
    bench_expand("expand 100x100x100 grid", "a=1:100 b=1:100 c=1:100", hundred)
    bench_count()
    bench_iterate()
    width = max(len(name) for name, *_ in RESULTS)
    for name, ours, versus, met in RESULTS:
        print(f"{name:<{width}}  {ours}   {versus}  {'ok' if met else 'MISSED'}")
    return 0 if all(met for *_, met in RESULTS) else 1


if __name__ == "__main__":
    assert list(iter_expand("a=1,2")) == [["a=1"], ["a=2"]]
    sys.exit(main())
