"""A kombu serializer that passes envelope bytes through untouched.

Signed envelopes must reach the receiver byte for byte: the receipt is bound to the SHA-256
of the exact bytes and the node stores them verbatim. Registering this content type lets
Nameko consumers accept it without decoding.
"""

from __future__ import annotations

import kombu.serialization

from services.protocol.transport import CONTENT_ENCODING, CONTENT_TYPE

SERIALIZER_NAME = "cluebus"


def encode(data):
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("cluebus envelopes are published as bytes")
    return bytes(data)


def decode(data):
    return data


def register() -> None:
    kombu.serialization.register(SERIALIZER_NAME, encode, decode, content_type=CONTENT_TYPE,
                                 content_encoding=CONTENT_ENCODING)


def nameko_serializer_config() -> dict:
    """The ``SERIALIZERS`` / ``ACCEPT`` entries that make Nameko register and accept it."""
    return {
        "SERIALIZERS": {SERIALIZER_NAME: {
            "encoder": "adapters.transport.serializer.encode",
            "decoder": "adapters.transport.serializer.decode",
            "content_type": CONTENT_TYPE,
            "content_encoding": CONTENT_ENCODING,
        }},
        "serializer": "json",
        "ACCEPT": ["json", SERIALIZER_NAME],
    }
