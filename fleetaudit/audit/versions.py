"""The natural order of version strings: a total order over any text.

A version is split into runs of ASCII digits (compared as numbers: ``1.10 > 1.9``,
``10.0 > 9.0``) and runs of other characters (compared case-insensitively as text);
``. - _ +`` and whitespace only separate runs. A leading ``v`` before a digit is ignored
(``v1.2`` sorts with ``1.2``).

Where one version is the other plus more runs, the extra run decides, semver-style:
a text run makes a pre-release, *older* than the version without it
(``1.0.0-beta < 1.0.0-rc1 < 1.0.0``), a number makes it newer (``1.0.0 < 1.0.0.1``).
At a given position a text run sorts before a number (``1.0.beta < 1.0.0``).

Versions that differ only in spelling (``1.01`` and ``1.1``, ``V1`` and ``v1``, ``1-0`` and
``1.0``) are ordered by their raw strings, so the order is total and only equal strings
have equal keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# (kind, digit count, digits, folded text): every position holds the same types, so any two
# keys compare without TypeError. Numbers compare by length then digits (leading zeros
# stripped) instead of int(), which Python refuses for more than 4300 digits.
Run = tuple[int, int, str, str]
VersionKey = tuple[tuple[Run, ...], str]

_TEXT, _END, _NUMBER = 0, 1, 2
_END_RUN: Run = (_END, 0, "", "")
_RUNS = re.compile(r"[0-9]+|[^0-9.\-_+\s]+")
_LEADING_V = re.compile(r"^[vV](?=[0-9])")


def version_key(version: str) -> VersionKey:
    """A sort key putting versions in natural order; equal only for equal strings."""
    body = _LEADING_V.sub("", version, count=1)
    runs = tuple(_run(text) for text in _RUNS.findall(body))
    # The end marker sorts between text and numbers: that makes "1.0-beta" < "1.0" < "1.0.1".
    return (*runs, _END_RUN), version


def _run(text: str) -> Run:
    if text[0].isascii() and text[0].isdigit():
        digits = text.lstrip("0") or "0"
        return (_NUMBER, len(digits), digits, "")
    return (_TEXT, 0, "", text.casefold())


def highest(versions: Iterable[str]) -> str:
    """The highest version in natural order; ValueError when there are none."""
    return max(versions, key=version_key)
