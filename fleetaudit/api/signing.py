"""Signature version 1.0 (HMAC-SHA1) of the platform's RPC API, as NOTES.md specifies.

Pure: strings in, strings out. The client signs with it and the emulator verifies with
it, so the known-answer vectors of NOTES.md and the official SDK pin it from outside.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import quote


def percent_encode(text: str) -> str:
    """RFC 3986 percent-encoding over UTF-8: only `A-Z a-z 0-9 - _ . ~` stay as they are."""
    return quote(text, safe="-_.~")


def canonical_query(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Every parameter but `Signature`, sorted by raw name in byte order, encoded, joined."""
    pairs = params.items() if isinstance(params, Mapping) else params
    # Sorting by the UTF-8 bytes of the raw name is the byte order the platform uses
    # (so `DeviceName.10` sorts before `DeviceName.2`).
    kept = sorted(
        ((name, value) for name, value in pairs if name != "Signature"),
        key=lambda pair: pair[0].encode(),
    )
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in kept)


def string_to_sign(method: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """`METHOD&%2F&enc(canonical query)` with the real HTTP method (the emulator echoes it)."""
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(method: str, params: Mapping[str, str] | Iterable[tuple[str, str]], secret: str) -> str:
    """The base64 HMAC-SHA1 signature of a request, keyed with `secret + "&"`."""
    return _hmac_sha1(string_to_sign(method, params), secret)


def signed_query(method: str, params: Mapping[str, str], secret: str) -> str:
    """The query string a client sends: the canonical query, then `&Signature=...`.

    The same bytes as `canonical_query` and `sign`, built faster for the hot path: the
    string to sign is the canonical query encoded once more, and since encoding works
    character by character, that is each name and value encoded twice, joined by the
    encoded `=` and `&`. Names and most values repeat from request to request, so both
    encodings come from a cache; only nonces and device ids are new each time.
    """
    pairs = sorted(
        ((name, value) for name, value in params.items() if name != "Signature"),
        key=lambda pair: pair[0].encode(),
    )
    canonical = "&".join(f"{_encoded(name)}={_encoded(value)}" for name, value in pairs)
    encoded_twice = "%26".join(f"{_twice(name)}%3D{_twice(value)}" for name, value in pairs)
    signature = _hmac_sha1(f"{method.upper()}&%2F&{encoded_twice}", secret)
    return f"{canonical}&Signature={percent_encode(signature)}"


@lru_cache(maxsize=4096)
def _encoded(text: str) -> str:
    return percent_encode(text)


@lru_cache(maxsize=4096)
def _twice(text: str) -> str:
    return percent_encode(_encoded(text))


def _hmac_sha1(to_sign: str, secret: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so the emulator leaks nothing through timing."""
    return hmac.compare_digest(expected.encode(), given.encode())
