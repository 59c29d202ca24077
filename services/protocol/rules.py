"""Every rule code cluebus produces, in one place (docs/protocol.md section 18).

A rule code names what a message or a call broke: it is carried by a rejection receipt's
``reason_codes``, kept with a quarantined message, stored with a rejected inbound message,
returned to a refused control call and printed by the command line as ``[code] detail``. Code
that produces one names it by its constant here, never by a string literal;
tests/unit/test_rule_codes.py checks that these sets are exactly the codes of section 18's
three tables and that no literal code is left in services/, adapters/ or schemas/.

- ``PROTOCOL_RULES`` (18.1): produced by the verification of section 12. ``ANSWERED`` says,
  as the table's "answered" column does, whether the sender gets a signed rejection receipt.
- ``NODE_RULES`` (18.2): a receiving node's checks of a verified message against what it
  knows (and a delivery that is not bytes at all).
- ``LOCAL_RULES`` (18.3): never sent on the wire; a node's own files, calls, outbox and
  publications, and the office's configuration.

Where this module lives, and why it imports nothing: every layer names rule codes, the lowest
ones too (adapters/crypto/exceptions.py, adapters/storage/exceptions.py, schemas/exceptions.py;
schemas/ itself imports adapters/crypto). The codes are the protocol's, so they live with it,
in services/protocol/; to let adapters/ and schemas/ import them without a cycle, this module
is a leaf: it imports nothing (not even ``from __future__``), and importing it runs only
services/__init__.py and services/protocol/__init__.py, which are docstrings. That is the
arrangement services/protocol/transport.py already has (adapters/transport/publisher.py
imports its content type). Keep it so: the test checks that this module and those two
packages' ``__init__`` import nothing.
"""

# -- 18.1 Protocol rules (section 12's verification) -------------------------------------------
MESSAGE_EMPTY = "message.empty"
MESSAGE_OVERSIZED = "message.oversized"
TRANSPORT_CONTENT_TYPE = "transport.content_type"
JSON_MALFORMED = "json.malformed"
JSON_DUPLICATE_KEY = "json.duplicate_key"
JSON_FLOAT = "json.float"
JSON_INTEGER_RANGE = "json.integer_range"
ENVELOPE_INVALID = "envelope.invalid"
PROTOCOL_UNSUPPORTED = "protocol.unsupported"
TRANSPORT_SENDER_MISMATCH = "transport.sender_mismatch"
KEY_UNKNOWN = "key.unknown"
KEY_PURPOSE_MISMATCH = "key.purpose_mismatch"
KEY_AGENCY_MISMATCH = "key.agency_mismatch"
KEY_REVOKED = "key.revoked"
KEY_NOT_YET_VALID = "key.not_yet_valid"
KEY_EXPIRED = "key.expired"
SIGNATURE_MALFORMED = "signature.malformed"
SIGNATURE_INVALID = "signature.invalid"
BODY_HASH_MISMATCH = "body.hash_mismatch"
AGENCY_UNKNOWN = "agency.unknown"
KIND_UNKNOWN = "kind.unknown"
KIND_VERSION_UNKNOWN = "kind.version_unknown"
ROUTE_FORBIDDEN = "route.forbidden"
RECIPIENT_MISMATCH = "recipient.mismatch"
CLOCK_SKEW = "clock.skew"
BODY_SEALED = "body.sealed"
BODY_INVALID = "body.invalid"
BODY_FACTS_MISMATCH = "body.facts_mismatch"

# -- 18.2 Node rules (a receiving node's own checks) ----------------------------------------------
LIFECYCLE_TRANSITION = "lifecycle.transition"
REFERRAL_MISMATCH = "referral.mismatch"
MESSAGE_ID_REUSED = "message.id_reused"
RECEIPT_UNKNOWN_MESSAGE = "receipt.unknown_message"
RECEIPT_WRONG_SENDER = "receipt.wrong_sender"
RECEIPT_HASH_MISMATCH = "receipt.hash_mismatch"
RECEIPT_UNADDRESSABLE = "receipt.unaddressable"
MESSAGE_NOT_BYTES = "message.not_bytes"
REWARD_RULE_BROKEN = "reward.rule_broken"
# Reconciliation (docs/protocol.md §20).
RECONCILIATION_UNKNOWN_SUMMARY = "reconciliation.unknown_summary"
RECONCILIATION_SUMMARY_MISMATCH = "reconciliation.summary_mismatch"
RECONCILIATION_ANSWER_INCONSISTENT = "reconciliation.answer_inconsistent"
KEYRING_INVALID = "keyring.invalid"
KEYRING_SIGNATURE = "keyring.signature"
KEYRING_STALE = "keyring.stale"
KEYRING_DROPS_KEY = "keyring.drops_key"

# -- 18.3 Local errors (never sent on the wire) ---------------------------------------------------
KEYSTORE_ERROR = "keystore.error"
ROUTES_MALFORMED = "routes.malformed"
MESSAGE_UNKNOWN = "message.unknown"
REFERRAL_UNKNOWN = "referral.unknown"
REQUEST_REUSED = "request.reused"
REQUEST_INVALID = "request.invalid"
REQUEST_DUPLICATE = "request.duplicate"
DELIVERY_TRANSITION = "delivery.transition"
OUTBOX_NOT_RETRYABLE = "outbox.not_retryable"
TRANSPORT_UNAVAILABLE = "transport.unavailable"
TRANSPORT_UNROUTABLE = "transport.unroutable"
TRANSPORT_REFUSED = "transport.refused"
AUDIT_CHAIN_BROKEN = "audit.chain_broken"
CALENDAR_INVALID = "calendar.invalid"
CALENDAR_MISSING = "calendar.missing"
DEADLINE_RULE_INVALID = "deadline_rule.invalid"
MONEY_RULE_INVALID = "money_rule.invalid"
RECONCILIATION_PEER_INVALID = "reconciliation.peer_invalid"
# A batch import's file (nothing of it is sent) or one of its rows (docs/import.md).
IMPORT_TOO_LARGE = "import.too_large"
IMPORT_FORMAT = "import.format"
IMPORT_ENCODING = "import.encoding"
IMPORT_SHEET = "import.sheet"
IMPORT_COLUMNS = "import.columns"
IMPORT_FORMULA = "import.formula"
IMPORT_MERGED_CELLS = "import.merged_cells"
IMPORT_CELL_INVALID = "import.cell_invalid"
IMPORT_RECORD_DUPLICATE = "import.record_duplicate"

PROTOCOL_RULES = frozenset({
    MESSAGE_EMPTY, MESSAGE_OVERSIZED, TRANSPORT_CONTENT_TYPE,
    JSON_MALFORMED, JSON_DUPLICATE_KEY, JSON_FLOAT, JSON_INTEGER_RANGE,
    ENVELOPE_INVALID, PROTOCOL_UNSUPPORTED, TRANSPORT_SENDER_MISMATCH,
    KEY_UNKNOWN, KEY_PURPOSE_MISMATCH, KEY_AGENCY_MISMATCH, KEY_REVOKED, KEY_NOT_YET_VALID, KEY_EXPIRED,
    SIGNATURE_MALFORMED, SIGNATURE_INVALID,
    BODY_HASH_MISMATCH, AGENCY_UNKNOWN, KIND_UNKNOWN, KIND_VERSION_UNKNOWN, ROUTE_FORBIDDEN,
    RECIPIENT_MISMATCH, CLOCK_SKEW, BODY_SEALED, BODY_INVALID, BODY_FACTS_MISMATCH,
})

NODE_RULES = frozenset({
    LIFECYCLE_TRANSITION, REFERRAL_MISMATCH, MESSAGE_ID_REUSED,
    RECEIPT_UNKNOWN_MESSAGE, RECEIPT_WRONG_SENDER, RECEIPT_HASH_MISMATCH, RECEIPT_UNADDRESSABLE,
    MESSAGE_NOT_BYTES, REWARD_RULE_BROKEN,
    RECONCILIATION_UNKNOWN_SUMMARY, RECONCILIATION_SUMMARY_MISMATCH, RECONCILIATION_ANSWER_INCONSISTENT,
    KEYRING_INVALID, KEYRING_SIGNATURE, KEYRING_STALE, KEYRING_DROPS_KEY,
})

LOCAL_RULES = frozenset({
    KEYSTORE_ERROR, ROUTES_MALFORMED, MESSAGE_UNKNOWN, REFERRAL_UNKNOWN,
    REQUEST_REUSED, REQUEST_INVALID, REQUEST_DUPLICATE, DELIVERY_TRANSITION, OUTBOX_NOT_RETRYABLE,
    TRANSPORT_UNAVAILABLE, TRANSPORT_UNROUTABLE, TRANSPORT_REFUSED,
    AUDIT_CHAIN_BROKEN, CALENDAR_INVALID, CALENDAR_MISSING, DEADLINE_RULE_INVALID, MONEY_RULE_INVALID,
    IMPORT_TOO_LARGE, IMPORT_FORMAT, IMPORT_ENCODING, IMPORT_SHEET, IMPORT_COLUMNS, IMPORT_FORMULA,
    IMPORT_MERGED_CELLS, IMPORT_CELL_INVALID, IMPORT_RECORD_DUPLICATE,
    RECONCILIATION_PEER_INVALID,
})

ALL_RULES = PROTOCOL_RULES | NODE_RULES | LOCAL_RULES

# -- Whether a protocol rule is answered (18.1, column "answered") ---------------------------------
# What decides it is when the rule is found: before the signature is verified (section 12.1,
# steps 1-8) the sender is not proven and the message is quarantined unanswered; after it, the
# sender gets a signed rejection receipt. A receipt is never answered, whatever its rule, and a
# rejection no receipt can be composed for is quarantined instead (section 13): those hold for
# every rule and are not repeated here.
NO = "no"
"""Found only before authentication (steps 1-8): quarantined, not answered."""
YES = "yes"
"""Found only after authentication (steps 9-18): answered with a rejection receipt."""
WHEN_OPENING_SEALED_BODY = "when_opening_sealed_body"
"""Found at step 2 or 6 (not answered) and again at step 16, opening a sealed body addressed to
the receiver: its plaintext's JSON (``json.*``) or its box keys (``key.*``), after the
signature was verified (answered). The table's "no (yes in a sealed plaintext)" and "no (yes
for box keys)"."""
YES_UNLESS_SENDER_UNKNOWN = "yes_unless_sender_unknown"
"""Answered, except when the unknown agency is the sender itself: no receipt can be addressed
to it, so the message is quarantined (``agency.unknown``)."""

ANSWERED = {
    MESSAGE_EMPTY: NO,
    MESSAGE_OVERSIZED: NO,
    TRANSPORT_CONTENT_TYPE: NO,
    JSON_MALFORMED: WHEN_OPENING_SEALED_BODY,
    JSON_DUPLICATE_KEY: WHEN_OPENING_SEALED_BODY,
    JSON_FLOAT: WHEN_OPENING_SEALED_BODY,
    JSON_INTEGER_RANGE: WHEN_OPENING_SEALED_BODY,
    ENVELOPE_INVALID: NO,
    PROTOCOL_UNSUPPORTED: NO,
    TRANSPORT_SENDER_MISMATCH: NO,
    KEY_UNKNOWN: WHEN_OPENING_SEALED_BODY,
    KEY_PURPOSE_MISMATCH: WHEN_OPENING_SEALED_BODY,
    KEY_AGENCY_MISMATCH: WHEN_OPENING_SEALED_BODY,
    KEY_REVOKED: WHEN_OPENING_SEALED_BODY,
    KEY_NOT_YET_VALID: WHEN_OPENING_SEALED_BODY,
    KEY_EXPIRED: WHEN_OPENING_SEALED_BODY,
    SIGNATURE_MALFORMED: NO,
    SIGNATURE_INVALID: NO,
    BODY_HASH_MISMATCH: YES,
    AGENCY_UNKNOWN: YES_UNLESS_SENDER_UNKNOWN,
    KIND_UNKNOWN: YES,
    KIND_VERSION_UNKNOWN: YES,
    ROUTE_FORBIDDEN: YES,
    RECIPIENT_MISMATCH: YES,
    CLOCK_SKEW: YES,
    BODY_SEALED: YES,
    BODY_INVALID: YES,
    BODY_FACTS_MISMATCH: YES,
}
