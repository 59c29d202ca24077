"""The envelope of protocol cluebus/1 (see docs/protocol.md)."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate, validates_schema

from .base import Contract
from .facts import FACT_FIELDS
from .fields import AgencyCode, Count, JsonObject, PatternString, Sha256Hex, StrictString, Uuid, UtcTimestamp

PROTOCOL = "cluebus/1"
PLAIN = "plain"
SEALED = "sealed"
BODY_ENCODINGS = (PLAIN, SEALED)
SEAL_ALGORITHM = "x25519-xsalsa20poly1305"

KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
KEY_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}:(ed25519|x25519):[0-9a-f]{32}$")

ENVELOPE_FIELDS = ("protocol", "message_id", "kind", "schema_version", "sender", "recipient",
                   "referral_id", "in_reply_to", "sent_at", "sender_key_id", "body_encoding",
                   "body", "body_sha256", "signature")


class SealedBodySchema(Contract):
    """What ``body`` holds when ``body_encoding`` is ``sealed``."""

    alg = fields.String(required=True, validate=validate.Equal(SEAL_ALGORITHM))
    sender_box_key_id = PatternString(KEY_ID, "key id", required=True)
    recipient_box_key_id = PatternString(KEY_ID, "key id", required=True)
    nonce = StrictString(required=True, max_length=64)
    ciphertext = StrictString(required=True, max_length=2 * 1024 * 1024)
    # Optional (protocol §11.4): the kind's non-personal facts, in the clear and signed, for
    # the joint-meeting office; the recipient checks them against the opened body.
    facts = JsonObject()


class EnvelopeSchema(Contract):
    protocol = fields.String(required=True)
    message_id = Uuid(required=True)
    kind = PatternString(KIND_NAME, "kind name", required=True)
    schema_version = Count(required=True, validate=validate.Range(min=1, max=10_000))
    sender = AgencyCode(required=True)
    recipient = AgencyCode(required=True)
    referral_id = Uuid(required=True)
    in_reply_to = Uuid(required=True, allow_none=True)
    sent_at = UtcTimestamp(required=True)
    sender_key_id = PatternString(KEY_ID, "key id", required=True)
    body_encoding = fields.String(required=True, validate=validate.OneOf(BODY_ENCODINGS))
    body = JsonObject(required=True)
    body_sha256 = Sha256Hex(required=True)
    signature = fields.String(required=True)

    @validates_schema
    def _check_consistency(self, data, **kwargs):
        if data.get("sender") and data.get("sender") == data.get("recipient"):
            raise ValidationError("sender and recipient must differ", "recipient")
        if data.get("body_encoding") == SEALED and isinstance(data.get("body"), dict):
            errors = _SEALED_BODY_SCHEMA.validate(data["body"])
            if errors:
                raise ValidationError(errors, "body")
            facts = data["body"].get("facts")
            if facts is not None:
                allowed = FACT_FIELDS.get(data.get("kind"), ())
                unknown = sorted(name for name in facts if name not in allowed)
                if unknown:
                    raise ValidationError({"facts": [f"not facts of {data.get('kind')}: {', '.join(unknown)}"]},
                                          "body")
                scalars = (str, int, bool, type(None))
                if not all(isinstance(value, scalars) for value in facts.values()):
                    raise ValidationError({"facts": ["facts are strings, integers, booleans or null"]}, "body")


_SEALED_BODY_SCHEMA = SealedBodySchema()
