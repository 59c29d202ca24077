"""Errors of the schema layer. Each names the rule it enforces in ``rule``."""

from __future__ import annotations


class SchemaError(Exception):
    rule = "schema.error"

    def __init__(self, detail: str, messages: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.messages = messages or {}


class EnvelopeInvalid(SchemaError):
    """Missing, unknown or ill-formed envelope fields."""
    rule = "envelope.invalid"


class UnsupportedProtocol(SchemaError):
    rule = "protocol.unsupported"


class UnknownKind(SchemaError):
    rule = "kind.unknown"


class UnknownSchemaVersion(SchemaError):
    rule = "kind.version_unknown"


class BodyInvalid(SchemaError):
    """The body does not match its kind's schema."""
    rule = "body.invalid"


class RouteTableError(SchemaError):
    rule = "routes.malformed"


class ForbiddenRoute(SchemaError):
    """The route table does not let this sender send this kind to this recipient."""
    rule = "route.forbidden"


class UnknownAgency(SchemaError):
    rule = "agency.unknown"
