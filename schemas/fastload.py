"""Loading through a contract without marshmallow's bookkeeping, with marshmallow's result.

Marshmallow spends most of a load on its own machinery (an error store, a closure and an
``And`` validator per field, hook lookups), not on checking: a clue transfer's body took
about 300 µs to load, and every transfer is loaded three times (sender, recipient, receipt)
besides its envelope. A plan walks the same field objects in the same order and runs the same
per-field code (each field's ``_deserialize``, its validators, its pre- and post-load
functions, then the schema's ``validates_schema`` hooks), and has no error path of its own:
at the first thing that is not plainly valid (a required field missing, a null where none is
allowed, an unknown member, anything that raises) it gives up, and marshmallow loads the
input itself, raising or returning exactly what it always did. So a plan can make a load
faster, never different; tests/unit/test_fastload.py holds the two equal for every contract,
on valid bodies and on many broken ones.

A schema gets no plan (marshmallow does all of it) when it uses what a plan does not
reproduce: ``many``, ``partial``, an ``unknown`` other than RAISE, pre- or post-load hooks,
``validates`` hooks, collection-level schema validators, or dotted attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from marshmallow import RAISE, fields
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import is_collection, missing

Plan = Callable[[Any], dict]


class GiveUp(Exception):
    """The plan stops here; marshmallow takes the input from the start."""


def plan_for(schema) -> Plan | None:
    """A function loading what ``schema.load(data)`` would load, raising GiveUp (or anything
    else) where marshmallow might do otherwise; None when the schema has no plan."""
    hooks = schema._hooks
    if schema.many or schema.partial or schema.unknown != RAISE:
        return None
    if hooks[PRE_LOAD] or hooks[POST_LOAD] or hooks[VALIDATES]:
        return None
    validators = []
    for attr_name, hook_many, options in hooks[VALIDATES_SCHEMA]:
        if hook_many:
            return None
        validators.append((getattr(schema, attr_name), bool(options.get("pass_original", False))))
    steps = []
    for attr_name, field in schema.load_fields.items():
        data_key = field.data_key if field.data_key is not None else attr_name
        key = field.attribute or attr_name
        if "." in key:
            return None
        steps.append((data_key, key, _field_loader(field, data_key)))
    known = frozenset(data_key for data_key, _, _ in steps)
    dict_class = schema.dict_class
    partial, unknown = schema.partial, schema.unknown

    def load(data):
        if type(data) is not dict and not isinstance(data, Mapping):
            raise GiveUp
        if not known.issuperset(data):
            raise GiveUp  # unknown members: marshmallow names them
        result = dict_class()
        for data_key, key, load_field in steps:
            value = load_field(data.get(data_key, missing), data)
            if value is not missing:
                result[key] = value
        for validator, pass_original in validators:
            if pass_original:
                validator(result, data, partial=partial, many=False, unknown=unknown)
            else:
                validator(result, partial=partial, many=False, unknown=unknown)
        return result

    return load


def _field_loader(field, attr: str) -> Callable[[Any, Any], Any]:
    """``field.deserialize(value, attr, data)`` on its valid path (Field.deserialize, with the
    field's validators called one by one instead of through a new ``And`` each time)."""
    cls = type(field)
    if (cls.deserialize is not fields.Field.deserialize or cls._validate is not fields.Field._validate
            or cls._validate_all is not fields.Field._validate_all):
        return lambda value, data: field.deserialize(value, attr, data)
    required, allow_none = field.required, field.allow_none
    load_default = field.load_default
    pre_load, post_load = tuple(field.pre_load), tuple(field.post_load)
    validators = tuple(field.validators)
    deserialize = _inner_deserializer(field)

    def load_field(value, data):
        if value is missing:
            if required:
                raise GiveUp
            return load_default() if callable(load_default) else load_default
        if value is None and not allow_none:
            raise GiveUp
        for func in pre_load:
            value = func(value)
        if allow_none and value is None:
            return None
        output = deserialize(value, attr, data)
        for validator in validators:
            validator(output)  # And ignores what they return; they raise
        for func in post_load:
            output = func(output)
        return output

    return load_field


def _inner_deserializer(field) -> Callable[[Any, Any, Any], Any]:
    """``field._deserialize``, except that a List's items go through their own plan."""
    if type(field)._deserialize is fields.List._deserialize:
        item = _field_loader(field.inner, None)

        def deserialize_list(value, attr, data):
            if not is_collection(value):
                raise GiveUp
            # List passes neither the attribute nor the data to its items.
            return [item(each, None) for each in value]

        return deserialize_list
    return field._deserialize
