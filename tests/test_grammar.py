"""The normative examples of the grammar (docs/grammar.md, from "Arguments" to
"each, all and the pipe"), verbatim."""

from decimal import Decimal

import pytest
from hydraflow._core import (
    SweepSyntaxError,
    collect,
    count,
    expand,
    expand_values,
    iter_expand,
    split,
)

EXPAND = [
    ("width=100,300", [["width=100"], ["width=300"]]),
    (
        "a=1:3 b=x,y",
        [
            ["a=1", "b=x"],
            ["a=1", "b=y"],
            ["a=2", "b=x"],
            ["a=2", "b=y"],
            ["a=3", "b=x"],
            ["a=3", "b=y"],
        ],
    ),
    (
        "model=small,large|lr=0.1,0.2 d=1,2",
        [
            ["model=small,large", "d=1"],
            ["model=small,large", "d=2"],
            ["lr=0.1,0.2", "d=1"],
            ["lr=0.1,0.2", "d=2"],
        ],
    ),
    ("model=small,medium|large", [["model=small,medium"], ["model=large"]]),
    ("a/k=1,2|3,4", [["a=1000,2000"], ["a=3000,4000"]]),
    ("a='1,2'", [["a='1,2'"]]),
    ("a=[1,2],[3,4]", [["a=[1,2]"], ["a=[3,4]"]]),
    ("a={x:1,y:2}", [["a={x:1,y:2}"]]),
    ("a=choice(1,2)", [["a=choice(1,2)"]]),
    ("model/encoder=resnet,vit", [["model/encoder=resnet"], ["model/encoder=vit"]]),
    ("url=s3://b/x,s3://b/y", [["url=s3://b/x"], ["url=s3://b/y"]]),
    ("~seed", [["~seed"]]),
    ("", [[]]),
]

COLLECT = [
    ("height=100:300:100", ["height=100,200,300"]),
    ("steps=:5", ["steps=0,1,2,3,4,5"]),
    ("lr=5:1:-1", ["lr=5,4,3,2,1"]),
    ("x=1:10:4", ["x=1,5,9"]),
    ("x=0:1:0.25", ["x=0.0,0.25,0.5,0.75,1.0"]),
    ("x=0.1:0.3:0.1", ["x=0.1,0.2,0.3"]),
    ("n=1:3:k", ["n=1000,2000,3000"]),
    ("w=1:3:n", ["w=1e-9,2e-9,3e-9"]),
    ("lr=0.1:0.4:0.1:m", ["lr=0.0001,0.0002,0.0003,0.0004"]),
    ("x=1.2e3:1.4e3:0.1e3", ["x=1200.0,1300.0,1400.0"]),
    ("x=-2:2:k", ["x=-2000,-1000,0,1000,2000"]),
    ("x=1:2:e2", ["x=100,200"]),
    ("x=4:M", ["x=4000000"]),
    ("lr=1e-5:1e-2:*10", ["lr=1e-5,0.0001,0.001,0.01"]),
    ("bs=16:128:*2", ["bs=16,32,64,128"]),
    ("x=0:1:#5", ["x=0.0,0.25,0.5,0.75,1.0"]),
    ("x=0:10:#3", ["x=0,5,10"]),
    ("lr/m=1,2,5", ["lr=0.001,0.002,0.005"]),
    ("b/k=4,8", ["b=4000,8000"]),
    ("model=(cnn,vit)_(s,l)", ["model=cnn_s,cnn_l,vit_s,vit_l"]),
    ("x=(1:3,5:9:2,20)k", ["x=1000,2000,3000,5000,7000,9000,20000"]),
    ("x=(1,4)k,(6,8)M", ["x=1000,4000,6000000,8000000"]),
    ("x=2e(-1,-2)", ["x=2e-1,2e-2"]),
    ("x=(1,5)e-(1:2)", ["x=1e-1,1e-2,5e-1,5e-2"]),
    ("hydra/launcher=joblib", ["hydra/launcher=joblib"]),
    ("a=b=c", ["a=b=c"]),
    ("name='hello world' n=1", ["name='hello world'", "n=1"]),
    ("", []),
]

ERRORS = [
    "x=5:1",
    "x=1:2:0",
    "x=3:5:-1",
    "x=1:3tep",
    "x=1:2:3:4",
    "x=:",
    "x=1:",
    "x=1,,2",
    "x=(1,2",
    "a='1",
    "a/k=x",
    "a/k=1:3:k",
    "justtext",
    "x=1:10:*1",
    "x=0:10:*2",
    "x=:10:*2",
    "x=0:1:#1",
    "x=0:1:#0.5",
]


@pytest.mark.parametrize(("text", "expected"), EXPAND)
def test_expand(text: str, expected: list[list[str]]) -> None:
    assert expand(text) == expected


@pytest.mark.parametrize(("text", "expected"), COLLECT)
def test_collect(text: str, expected: list[str]) -> None:
    assert collect(text) == expected


def test_tenths_are_eleven_exact_values() -> None:
    [override] = collect("x=0:1:0.1")
    values = override.removeprefix("x=").split(",")
    assert len(values) == 11
    assert values[0] == "0.0"
    assert values[-1] == "1.0"
    assert [Decimal(v) for v in values] == [Decimal(i) / 10 for i in range(11)]


@pytest.mark.parametrize("text", ERRORS)
def test_errors(text: str) -> None:
    with pytest.raises(SweepSyntaxError):
        collect(text)
    with pytest.raises(SweepSyntaxError):
        expand(text)


def test_pipe_in_all_is_an_error() -> None:
    with pytest.raises(SweepSyntaxError):
        collect("a=1|2")


@pytest.mark.parametrize("text", ["a=1|", "|a=1"])
def test_bad_pipes_in_each(text: str) -> None:
    with pytest.raises(SweepSyntaxError):
        expand(text)


def test_error_message_points_at_the_spot() -> None:
    with pytest.raises(SweepSyntaxError) as caught:
        collect("count=1:3tep")
    error = caught.value
    assert str(error) == (
        "invalid range in 'count=1:3tep': '3tep' is not a number\n  count=1:3tep\n          ^^^^"
    )
    assert isinstance(error, ValueError)
    assert (error.argument, error.position, error.reason) == (
        "count=1:3tep",
        8,
        "'3tep' is not a number",
    )


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("lr=intreval(1e-4,1e-1)", "did you mean interval(...)?"),
        ("model=choise(cnn,mlp)", "did you mean choice(...)?"),
        ("x=Interval(0,1)", "did you mean interval(...)?"),
        ("lr=loguniform(1e-4,1e-1)", "Hydra's sweepers read interval(LOW,HIGH)"),
    ],
)
def test_a_mistaken_hydra_function_is_no_product(text: str, hint: str) -> None:
    """Hydra refuses an unknown function; as a product it would sweep the
    text around its values (`intreval1e-4`), silently."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match="Unknown function"):
        OverridesParser.create().parse_override(text).sweep_string_iterator()
    for parse in (collect, expand):
        with pytest.raises(SweepSyntaxError, match="is not one of Hydra's sweep functions") as e:
            parse(text)
        name = text[text.index("=") + 1 : text.index("(")]
        assert hint in e.value.reason and f"write ({name})(...)" in e.value.reason
        assert e.value.position == text.index("=") + 1


def test_a_product_named_like_no_hydra_function_stays_a_product() -> None:
    assert collect("m=resnet(18,34) p=port(80,81) q=(choise)(a,b) d=INT(4,8)") == [
        "m=resnet18,resnet34",
        "p=port80,port81",
        "q=choisea,choiseb",
        "d=INT4,INT8",
    ]


def test_a_hydra_function_with_a_blank_before_its_parenthesis_is_hydras() -> None:
    """Hydra reads `range (1,3)` as range(1,3): it is passed on, not made a
    product of the text `range ` and the values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert collect(["a=range (1,3)"]) == ["a=range (1,3)"]
    swept = OverridesParser.create().parse_override("a=range (1,3)").sweep_string_iterator()
    assert list(swept) == ["1", "2"]


def test_reversed_range_suggests_a_negative_step() -> None:
    with pytest.raises(SweepSyntaxError, match=r"use a negative step, e\.g\. 5:1:-1"):
        collect("x=5:1")
    # The step written keeps its size: -1 would sweep 0.1 alone.
    with pytest.raises(SweepSyntaxError, match=r"e\.g\. 0\.1:0\.01:-0\.01\n"):
        collect("lr=0.1:0.01:0.01")


def test_empty_element_hints_at_a_stray_space() -> None:
    with pytest.raises(SweepSyntaxError, match="a=1, 2"):
        collect("a=1,")


def test_error_names_the_argument_within_a_string() -> None:
    with pytest.raises(SweepSyntaxError) as caught:
        expand("a=1 b=1:x c=2")
    assert caught.value.argument == "b=1:x"
    assert caught.value.position == 4


def test_position_counts_characters() -> None:
    with pytest.raises(SweepSyntaxError) as caught:
        collect("größe=1:x")
    assert caught.value.position == 8


def test_sequences_are_already_split() -> None:
    assert collect(["name=hello world", "n=1:2"]) == ["name=hello world", "n=1,2"]
    assert expand(("a=1,2",)) == [["a=1"], ["a=2"]]


def test_split_keeps_quotes_and_brackets() -> None:
    assert split("a='x y'  b=[1, 2]\tc=(1, 2)") == ["a='x y'", "b=[1, 2]", "c=(1, 2)"]
    with pytest.raises(SweepSyntaxError):
        split("a='x")


def test_expand_values_applies_a_scale() -> None:
    assert expand_values("1:3", "k") == ["1000", "2000", "3000"]
    assert expand_values("0.10,x") == ["0.10", "x"]
    with pytest.raises(SweepSyntaxError):
        expand_values("1", "q")


def test_count_is_instant_for_huge_grids() -> None:
    assert count("a=1:100000 b=1:100000 c=1:100000") == 10**15
    assert count("") == 1
    assert count("a=1|2|3 b=1:2") == 6


def test_values_are_shared_objects() -> None:
    grid = expand("a=1:100 b=1:100")
    assert grid[0][0] is grid[1][0]
    assert grid[0][1] is grid[100][1]


def test_iter_expand_is_lazy() -> None:
    iterator = iter_expand("a=1:1000 b=1:1000 c=1:1000")
    assert iterator.__length_hint__() == 10**9
    assert next(iterator) == ["a=1", "b=1", "c=1"]
    assert next(iterator) == ["a=1", "b=1", "c=2"]


@pytest.mark.parametrize(
    "text",
    [
        "a=1:999999999|b=1",  # a pipe lists every value of its sections
        "a=1:6000000 b=1:6000000",  # two arguments under the limit, together over it
        "a=1:10000 b=1:10000",  # a grid too large to build (iter_expand walks it)
    ],
)
def test_every_size_limit_holds_for_every_form(text: str) -> None:
    with pytest.raises(SweepSyntaxError, match="more than can be listed"):
        expand(text)
    assert count("a=1:10000 b=1:10000") == 10**8


def test_collect_refuses_more_than_the_limit_in_all() -> None:
    with pytest.raises(SweepSyntaxError, match="more than can be listed"):
        collect("a=1:6000000 b=1:6000000")


@pytest.mark.parametrize("text", ["x=1e-330:2e-330:#4", "x=1e330:2e330:#4"])
def test_count_ranges_beyond_float_range_are_errors(text: str) -> None:
    with pytest.raises(SweepSyntaxError, match="underflow or overflow"):
        collect(text)


def test_exact_values_beyond_float_range_stay_exact() -> None:
    assert collect("x=1e-330:2e-330:#2") == ["x=1e-330,2e-330"]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(SweepSyntaxError, match="nest more than 64 deep"):
        expand("x=" + "(" * 100_000 + "1" + ")" * 100_000)


# The published HydraFlow 0.23.2's `expand` and `collect` (its parser, which
# split with shlex) on these strings, measured on 2026-12-08.
PUBLISHED_QUOTED = [
    (
        "'model.name=hello world' width=1,2",
        [["model.name=hello world", "width=1"], ["model.name=hello world", "width=2"]],
        ["model.name=hello world", "width=1,2"],
    ),
    (
        "\"model.name=big model\" 'size=1,2'",
        [["model.name=big model", "size=1"], ["model.name=big model", "size=2"]],
        ["model.name=big model", "size=1,2"],
    ),
]


@pytest.mark.parametrize(("text", "expanded", "collected"), PUBLISHED_QUOTED)
def test_an_argument_quoted_whole_is_read_as_the_published_tool_read_it(
    text: str, expanded: list[list[str]], collected: list[str]
) -> None:
    assert expand(text) == expanded
    assert collect(text) == collected


def test_quotes_inside_an_argument_stay_and_a_quoted_word_is_no_argument() -> None:
    assert expand("a='x,y' \"b='p q'\"") == [["a='x,y'", "b='p q'"]]
    with pytest.raises(SweepSyntaxError) as error:
        expand("'hello world'")
    assert error.value.reason == (
        "expected KEY=VALUES (or ~KEY) inside the quotes, e.g. 'KEY=hello world'"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lr=log(1:3)", "geometric range, START:STOP:*FACTOR (here 1:3:*10)"),
        ("lr=log(0.0001:0.1:10)", "(here 0.0001:0.1:*10)"),
        ("seed: 1", "did you mean seed=1? (an override is KEY=VALUES, no space)"),
        ("seed:1", "did you mean seed=1? (an override is KEY=VALUES)"),
    ],
)
def test_near_misses_name_what_was_meant(text: str, reason: str) -> None:
    with pytest.raises(SweepSyntaxError) as error:
        collect(text)
    assert reason in error.value.reason
    assert "=1'" not in error.value.reason  # never `seed:=1` nor `'...'=1`


def test_log_as_text_is_a_product_written_so() -> None:
    assert collect("name=(log)(1:3)") == ["name=log1,log2,log3"]
