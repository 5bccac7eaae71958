import itertools
import time

from hydraflow._core import ulid, ulids

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def decode_millis(value: str) -> int:
    number = 0
    for char in value[:10]:
        number = number * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    return number


def test_ulids_are_26_crockford_characters() -> None:
    value = ulid()
    assert len(value) == 26
    assert set(value) <= CROCKFORD


def test_ulids_carry_the_time() -> None:
    before = int(time.time() * 1000)
    value = ulid()
    after = int(time.time() * 1000)
    assert before <= decode_millis(value) <= after


def test_hundred_thousand_ulids_strictly_increase() -> None:
    values = ulids(100_000)
    assert all(a < b for a, b in itertools.pairwise(values))
    assert ulid() > values[-1]
