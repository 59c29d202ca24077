"""JSON Schema (draft 2020-12) for every contract, derived from the marshmallow schemas.

Cross-field rules written in ``validates_schema`` (e.g. "reasons required when not filed")
cannot be expressed field by field; they are listed under ``x-cluebus-rules`` from the
schema's docstring and enforced by the marshmallow schemas themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

from marshmallow import Schema, fields, validate

from . import fields as cf
from .envelope import PROTOCOL, EnvelopeSchema, SealedBodySchema
from .registry import BODY_SCHEMAS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "urn:cluebus:schema:"


def field_schema(field: fields.Field) -> dict:
    result: dict = {}
    if isinstance(field, fields.Nested):
        nested = field.schema if isinstance(field.schema, Schema) else field.nested()
        result = object_schema(nested)
    elif isinstance(field, fields.List):
        result = {"type": "array", "items": field_schema(field.inner)}
    elif isinstance(field, fields.Dict):
        result = {"type": "object"}
    elif isinstance(field, cf.UtcTimestamp):
        result = {"type": "string", "format": "date-time",
                  "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"}
    elif isinstance(field, cf.IsoDate):
        result = {"type": "string", "format": "date"}
    elif isinstance(field, fields.Boolean):
        result = {"type": "boolean"}
    elif isinstance(field, fields.Integer):
        result = {"type": "integer"}
    elif isinstance(field, fields.String):
        result = {"type": "string"}
        if isinstance(field, cf.PatternString):
            result["pattern"] = field.pattern.pattern
    else:  # pragma: no cover - every field type in use is handled above
        raise TypeError(f"no JSON Schema mapping for {type(field).__name__}")
    for validator in _validators(field):
        _apply_validator(result, validator)
    if field.allow_none:
        result = {"anyOf": [result, {"type": "null"}]}
    return result


def _validators(field: fields.Field) -> list:
    return list(field.validators)


def _apply_validator(result: dict, validator) -> None:
    if isinstance(validator, validate.OneOf):
        result["enum"] = list(validator.choices)
    elif isinstance(validator, validate.Equal):
        result["const"] = validator.comparable
    elif isinstance(validator, validate.Range):
        if validator.min is not None:
            result["minimum"] = validator.min
        if validator.max is not None:
            result["maximum"] = validator.max
    elif isinstance(validator, validate.Length):
        prefix = "Items" if result.get("type") == "array" else "Length"
        if validator.min is not None:
            result[f"min{prefix}"] = validator.min
        if validator.max is not None:
            result[f"max{prefix}"] = validator.max
    elif isinstance(validator, validate.Regexp):
        result["pattern"] = validator.regex.pattern


def object_schema(schema: Schema) -> dict:
    properties = {}
    required = []
    for name, field in schema.fields.items():
        properties[name] = field_schema(field)
        if field.required:
            required.append(name)
    result = {"type": "object", "properties": properties, "required": required,
              "additionalProperties": False}
    doc = (type(schema).__doc__ or "").strip()
    if doc:
        result["description"] = doc
    return result


def body_document(kind: str, version: int) -> dict:
    document = {"$schema": DIALECT, "$id": f"{ID_BASE}{kind}:v{version}",
                "title": f"{kind} body, schema version {version}"}
    document.update(object_schema(BODY_SCHEMAS[kind][version]()))
    return document


def envelope_document() -> dict:
    document = {"$schema": DIALECT, "$id": f"{ID_BASE}envelope",
                "title": f"{PROTOCOL} envelope"}
    document.update(object_schema(EnvelopeSchema()))
    document["properties"]["protocol"]["const"] = PROTOCOL
    document["$defs"] = {"sealed_body": object_schema(SealedBodySchema())}
    return document


def export_all(directory: str | Path) -> list[Path]:
    """Write ``envelope.schema.json`` and ``<kind>.v<N>.schema.json`` for every kind."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    documents = {"envelope.schema.json": envelope_document()}
    for kind, versions in BODY_SCHEMAS.items():
        for version in versions:
            documents[f"{kind}.v{version}.schema.json"] = body_document(kind, version)
    for name, document in documents.items():
        path = out / name
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
