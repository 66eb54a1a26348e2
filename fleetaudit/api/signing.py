"""Signature version 1.0 (HMAC-SHA1) of the platform's RPC API, as NOTES.md specifies.

Pure: strings in, strings out. The client signs with it and the emulator verifies with
it, so the known-answer vectors of NOTES.md and the official SDK pin it from outside.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
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
    return sign_canonical(method, canonical_query(params), secret)


def sign_canonical(method: str, canonical: str, secret: str) -> str:
    """`sign` for a canonical query already built (the client sends that same string)."""
    to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so the emulator leaks nothing through timing."""
    return hmac.compare_digest(expected.encode(), given.encode())
