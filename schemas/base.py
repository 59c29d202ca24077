"""The base of every contract: unknown fields are rejected, never ignored."""

from __future__ import annotations

from marshmallow import RAISE, Schema

from . import fastload


class Contract(Schema):
    class Meta:
        unknown = RAISE
        ordered = True

    # A plain load or validate goes through the schema's plan (schemas/fastload.py) and,
    # wherever the plan stops, through marshmallow itself: the same result, sooner.
    def load(self, data, *, many=None, partial=None, unknown=None):
        if many is None and partial is None and unknown is None:
            plan = self._plan()
            if plan is not None:
                try:
                    return plan(data)
                except Exception:  # anything at all: marshmallow decides, and explains
                    pass
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def validate(self, data, *, many=None, partial=None):
        if many is None and partial is None:
            plan = self._plan()
            if plan is not None:
                try:
                    plan(data)
                    return {}
                except Exception:
                    pass
        return super().validate(data, many=many, partial=partial)

    def _plan(self):
        # Kept with the fields it was made from: a copied schema (Nested copies instances)
        # gets fields of its own, and a plan of its own.
        made = self.__dict__.get("_fast_plan")
        if made is None or made[0] is not self.load_fields:
            made = (self.load_fields, fastload.plan_for(self))
            self._fast_plan = made
        return made[1]
