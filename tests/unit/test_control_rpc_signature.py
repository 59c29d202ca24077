"""A control call's arguments are checked against the method's signature as nameko checks
them (services/nodes/entrypoints.ControlRpc.check_signature keeps the signature instead of
reading it on every call): the same calls pass, the same are refused with IncorrectSignature."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from nameko.exceptions import IncorrectSignature
from nameko.extensions import Entrypoint

from services.nodes.entrypoints import ControlRpc


class Service:
    def refer(self, body, recipient=None, seal=None, request_id=None):
        pass

    def follow_up(self, referral_id, body, *, recipients=None):
        pass


CALLS = [((), {}), (("b",), {}), (("b", "r"), {}), ((), {"body": "b"}), (("b",), {"request_id": "x"}),
         (("b", "r", True, "x", "extra"), {}), (("b",), {"body": "again"}), (("b",), {"unknown": 1}),
         (("id", "b"), {"recipients": ["a"]}), (("id", "b", ["a"]), {}), (("id",), {})]


def _entrypoint(cls, method_name):
    entrypoint = cls.__new__(cls)
    entrypoint.container = SimpleNamespace(service_cls=Service)
    entrypoint.method_name = method_name
    return entrypoint


def _outcome(entrypoint, args, kwargs):
    try:
        entrypoint.check_signature(args, kwargs)
        return "passes"
    except IncorrectSignature:
        return "refused"


@pytest.mark.parametrize("method_name", ["refer", "follow_up"])
def test_the_same_calls_pass_and_the_same_are_refused_as_with_nameko(method_name):
    ours, theirs = _entrypoint(ControlRpc, method_name), _entrypoint(Entrypoint, method_name)
    outcomes = [(_outcome(ours, args, kwargs), _outcome(theirs, args, kwargs)) for args, kwargs in CALLS * 2]
    assert all(mine == nameko for mine, nameko in outcomes), outcomes
    assert {mine for mine, _ in outcomes} == {"passes", "refused"}
