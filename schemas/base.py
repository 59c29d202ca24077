"""The base of every contract: unknown fields are rejected, never ignored."""

from __future__ import annotations

from marshmallow import RAISE, Schema


class Contract(Schema):
    class Meta:
        unknown = RAISE
        ordered = True
