"""Errors of the schema layer. Each names the rule it enforces in ``rule``
(services/protocol/rules.py, a leaf module every layer may import)."""

from __future__ import annotations

from services.protocol import rules


class SchemaError(Exception):
    """Base of the schema layer's errors; never raised itself: each subclass names its rule."""

    rule: str

    def __init__(self, detail: str, messages: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.messages = messages or {}


class UnknownKind(SchemaError):
    rule = rules.KIND_UNKNOWN


class UnknownSchemaVersion(SchemaError):
    rule = rules.KIND_VERSION_UNKNOWN


class BodyInvalid(SchemaError):
    """The body does not match its kind's schema."""
    rule = rules.BODY_INVALID


class RouteTableError(SchemaError):
    rule = rules.ROUTES_MALFORMED


class ForbiddenRoute(SchemaError):
    """The route table does not let this sender send this kind to this recipient."""
    rule = rules.ROUTE_FORBIDDEN
