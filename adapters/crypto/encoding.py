"""Base64 (RFC 4648 section 4, standard alphabet, padded) with strict decoding."""

from __future__ import annotations

import base64
import binascii


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Decode padded standard base64; anything non-canonical raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not valid base64: {exc}") from exc
    if b64encode(data) != text:
        raise ValueError("base64 is not in canonical form")
    return data
