"""JSON Schema (draft 2020-12) for every contract, derived from the marshmallow schemas.

The exported schemas must accept nothing the node refuses, field by field, when run by a
standard validator (``format`` is only an annotation in 2020-12, so timestamps, dates and
"not blank" are enforced with ``pattern``). Patterns are written so that ECMA-262 (JSON
Schema's dialect) and Python's ``re`` (used by the Python ``jsonschema`` package) read them
the same way: ASCII classes such as ``[0-9]``, never ``\\d``/``\\w``/``\\s``/``.``, and
``\\uXXXX`` escapes for other code points. Python's ``$`` also matches before a final
newline, so every anchored pattern comes with ``"not": {"pattern": "\\n"}``.

Cross-field rules written in ``validates_schema`` (e.g. "reasons required when not filed"),
and sender != recipient in the envelope, are not expressed; they are enforced by the
marshmallow schemas themselves (docs/protocol.md 15.2). The schema's docstring becomes the
``description``.
"""

from __future__ import annotations

import json
from pathlib import Path

from marshmallow import Schema, fields, validate

from . import fields as cf
from .envelope import PROTOCOL, SEALED, EnvelopeSchema, SealedBodySchema
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
        result = {"type": "string", "format": "date-time"}
        _add_pattern(result, cf.TIMESTAMP_PATTERN)
    elif isinstance(field, cf.IsoDate):
        result = {"type": "string", "format": "date"}
        _add_pattern(result, cf.DATE_PATTERN)
    elif isinstance(field, fields.Boolean):
        result = {"type": "boolean"}
    elif isinstance(field, fields.Integer):
        result = {"type": "integer"}
    elif isinstance(field, fields.String):
        result = {"type": "string"}
        if isinstance(field, cf.PatternString):
            _add_pattern(result, field.pattern.pattern)
        if isinstance(field, cf.StrictString):
            _add_pattern(result, cf.NOT_BLANK_PATTERN)
    else:  # pragma: no cover - every field type in use is handled above
        raise TypeError(f"no JSON Schema mapping for {type(field).__name__}")
    for validator in _validators(field):
        _apply_validator(result, validator)
    if field.allow_none:
        result = {"anyOf": [result, {"type": "null"}]}
    return result


def _validators(field: fields.Field) -> list:
    return list(field.validators)


# Outside a character class, these escapes and "." mean different things in Python's re and
# in ECMA-262 (e.g. \\d matches Arabic-Indic digits in Python, "." excludes U+2028 in ECMA).
_NOT_PORTABLE_ESCAPES = set("dDwWsSbBAZz")


def check_portable(pattern: str) -> str:
    """Refuse pattern text that Python's re and ECMA-262 would read differently."""
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index + 1:index + 2]
            if escaped in _NOT_PORTABLE_ESCAPES:
                raise ValueError(f"pattern {pattern!r} uses \\{escaped}, which is not portable")
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "." and not in_class:
            raise ValueError(f"pattern {pattern!r} uses '.', which is not portable")
        index += 1
    return pattern


def _add_pattern(result: dict, pattern: str) -> None:
    """Add ``pattern`` (a second one goes under ``allOf``); reject a final newline when anchored."""
    check_portable(pattern)
    if "pattern" not in result:
        result["pattern"] = pattern
    elif pattern != result["pattern"]:
        result.setdefault("allOf", []).append({"pattern": pattern})
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        result["not"] = {"pattern": "\\n"}


def _apply_validator(result: dict, validator) -> None:
    if isinstance(validator, validate.OneOf):
        result["enum"] = list(validator.choices)
    elif isinstance(validator, validate.Equal):
        result["const"] = validator.comparable
    elif isinstance(validator, validate.Range):
        if validator.min is not None:
            result["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
        if validator.max is not None:
            result["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
    elif isinstance(validator, validate.Length):
        prefix = "Items" if result.get("type") == "array" else "Length"
        low = validator.equal if validator.equal is not None else validator.min
        high = validator.equal if validator.equal is not None else validator.max
        if low is not None:
            result[f"min{prefix}"] = low
        if high is not None:
            result[f"max{prefix}"] = high
    elif isinstance(validator, validate.Regexp):
        # marshmallow's Regexp uses re.match: anchored at the start only.
        text = validator.regex.pattern
        _add_pattern(result, text if text.startswith("^") else f"^(?:{text})")
    elif isinstance(validator, cf.FullMatch):
        pass  # a PatternString's own pattern, exported with the field
    else:
        # Ignoring a validator would make the export looser than the node.
        raise TypeError(f"no JSON Schema mapping for validator {type(validator).__name__}")


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
    # EnvelopeSchema checks a sealed body against SealedBodySchema; so does the export.
    document["if"] = {"properties": {"body_encoding": {"const": SEALED}},
                      "required": ["body_encoding"]}
    document["then"] = {"properties": {"body": {"$ref": "#/$defs/sealed_body"}}}
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
