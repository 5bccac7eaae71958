"""Properties of the sweep grammar, checked with hypothesis."""

from decimal import Decimal

from hydraflow._core import SweepSyntaxError, collect, count, expand, iter_expand
from hypothesis import given, settings
from hypothesis import strategies as st

keys = st.sampled_from(["a", "b.c", "+d", "model/encoder", "e_f"])
words = st.sampled_from(["x", "cnn", "s3://b/y", "'q,r'", "[1,2]", "null", "1e-3", "0.10"])
small_ints = st.integers(min_value=-20, max_value=20)


@st.composite
def ranges(draw: st.DrawFn) -> str:
    start = draw(small_ints)
    stop = draw(st.integers(min_value=start, max_value=start + 12))
    step = draw(st.integers(min_value=1, max_value=4))
    scale = draw(st.sampled_from(["", ":k", ":m", ":e2", ":n"]))
    return f"{start}:{stop}:{step}{scale}"


@st.composite
def products(draw: st.DrawFn) -> str:
    left = ",".join(draw(st.lists(st.sampled_from(["p", "q", "1:2"]), min_size=1, max_size=3)))
    right = ",".join(draw(st.lists(st.sampled_from(["s", "t", "3"]), min_size=1, max_size=3)))
    return f"({left})_({right})"


elements = st.one_of(words, ranges(), products(), small_ints.map(str))


@st.composite
def overrides(draw: st.DrawFn) -> str:
    values = ",".join(draw(st.lists(elements, min_size=1, max_size=3)))
    return f"{draw(keys)}={values}"


@st.composite
def pipes(draw: st.DrawFn) -> str:
    sections = draw(st.lists(overrides(), min_size=2, max_size=3))
    return "|".join(sections)


arguments = st.lists(st.one_of(overrides(), pipes(), st.just("~seed")), max_size=3)


@given(arguments)
def test_count_is_the_length_of_expand(args: list[str]) -> None:
    assert count(args) == len(expand(args))
    assert count(" ".join(args)) == count(args)


@given(arguments)
def test_iter_expand_yields_what_expand_returns(args: list[str]) -> None:
    assert list(iter_expand(args)) == expand(args)


@given(overrides())
def test_collect_and_expand_agree_for_one_argument(arg: str) -> None:
    [collected] = collect(arg)
    key = collected.split("=", 1)[0]
    values = [row[0].split("=", 1)[1] for row in expand(arg)]
    assert collected == f"{key}={','.join(values)}"


def exact_values(start: Decimal, stop: Decimal, step: Decimal) -> list[Decimal]:
    values = []
    value = start
    while value <= stop:
        values.append(value)
        value += step
    return values


decimals = st.decimals(min_value=-100, max_value=100, places=3, allow_nan=False)


@given(
    decimals,
    st.decimals(min_value=0, max_value=5, places=3),
    st.integers(1, 40),
    st.sampled_from(["", "k", "m", "u", "e5", "e-7"]),
)
def test_rendered_numbers_read_back_exactly(
    start: Decimal, span: Decimal, steps: int, scale: str
) -> None:
    step = max(span / steps, Decimal("0.001")).quantize(Decimal("0.001"))
    stop = start + span
    text = f"x={start}:{stop}:{step}" + (f":{scale}" if scale else "")
    [override] = collect(text)
    rendered = [Decimal(v) for v in override.removeprefix("x=").split(",")]
    factor = Decimal(10) ** {"": 0, "k": 3, "m": -3, "u": -6, "e5": 5, "e-7": -7}[scale]
    assert rendered == [v * factor for v in exact_values(start, stop, step)]


@given(st.integers(2, 50), st.integers(-5, 5), st.integers(1, 9))
def test_count_ranges_hit_both_ends(n: int, start: int, width: int) -> None:
    [override] = collect(f"x={start}:{start + width}:#{n}")
    values = override.removeprefix("x=").split(",")
    assert len(values) == n
    assert Decimal(values[0]) == start
    assert Decimal(values[-1]) == start + width


grammar_text = st.text(alphabet="ab=:,|()[]{}'\"~/*#.-+e0123456789kmM _\t", max_size=30)

# The Rust fuzz (rust/fuzz.rs, in `cargo test`) runs 200,000 generated inputs;
# this adds 5,000 through the Python binding, where the GIL and conversions are.
FUZZ_EXAMPLES = 5_000


def small_enough_to_list(text: str) -> bool:
    """Listing is bounded by the core's limit (10^7 values), but that is slow
    in a test: list only what is small, judging a pipe's sections as arguments."""
    try:
        return count(text) <= 10_000 and count(text.replace("|", " ")) <= 10_000
    except SweepSyntaxError:
        return False


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.one_of(grammar_text, st.text(max_size=20)))
def test_no_input_crashes(text: str) -> None:
    listable = small_enough_to_list(text)
    for function in (expand, collect):
        if not listable:
            continue
        try:
            function(text)
        except SweepSyntaxError as error:
            assert isinstance(error.position, int)
            assert error.reason


@given(st.one_of(overrides(), pipes()))
def test_an_argument_quoted_whole_reads_as_its_text(arg: str) -> None:
    """As a shell (and the published HydraFlow's shlex) reads it."""
    assert expand([f'"{arg}"']) == expand([arg])
