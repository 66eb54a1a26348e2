"""Natural version order: numbers as numbers, pre-releases first, and a total order on any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetaudit.audit.versions import highest, version_key

# Text drawn from version-like characters, so runs, separators and ties are common.
version_text = st.text(alphabet="0123456789.-_+ vVabcRC", max_size=12) | st.text(max_size=12)
dotted = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("9.0", "10.0"),
        ("1.9", "1.10"),
        ("1.0.0-beta", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-rc1", "1.0.0-rc2"),
        ("1.0.0-rc9", "1.0.0-rc10"),
        ("1.0.0", "1.0.0.1"),
        ("1.0.beta", "1.0.0"),
        ("v1.2", "1.3"),
        ("1.2", "v1.3"),
        ("1.01", "1.1"),  # same numbers: raw string breaks the tie
        ("2.0-Beta", "2.0-beta"),
        ("", "0"),
    ],
)
def test_natural_order_examples(lower: str, higher: str) -> None:
    """Each pair sorts in the documented natural order."""
    assert version_key(lower) < version_key(higher)


def test_huge_numbers_compare_without_int_limits() -> None:
    """Digit runs longer than Python's int() limit still compare numerically."""
    assert version_key("9" * 5000) < version_key("1" + "0" * 5000)


def test_highest_picks_natural_maximum() -> None:
    """highest() is the natural maximum, not the lexical one."""
    assert highest(["1.9", "1.10", "1.10-rc1", "1.2"]) == "1.10"


def test_highest_of_nothing_raises() -> None:
    """highest() of an empty collection raises ValueError."""
    with pytest.raises(ValueError, match="empty"):
        highest([])


@given(version_text, version_text)
def test_keys_equal_only_for_equal_strings(a: str, b: str) -> None:
    """Antisymmetry: two keys are equal exactly when the strings are."""
    assert (version_key(a) == version_key(b)) == (a == b)


@given(version_text, version_text)
def test_order_is_total(a: str, b: str) -> None:
    """Totality: any two versions compare one way, without error."""
    ka, kb = version_key(a), version_key(b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1


@given(version_text, version_text, version_text)
def test_order_is_transitive(a: str, b: str, c: str) -> None:
    """Transitivity: sorting three versions gives a chain that holds pairwise."""
    x, y, z = sorted((a, b, c), key=version_key)
    assert version_key(x) <= version_key(y) <= version_key(z)
    assert version_key(x) <= version_key(z)


@given(dotted, dotted)
def test_dotted_integers_order_numerically(a: list[int], b: list[int]) -> None:
    """Dotted integer versions order like their integer tuples (equal tuples: same string)."""
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    if a != b:
        assert (version_key(va) < version_key(vb)) == (a < b)
