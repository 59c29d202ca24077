"""Each agency's role on the bus as data: the RPC methods its node adds, and what they send.

The roles are configuration (``ROLES_FILE``; empty: the shipped ``services/roles.yaml``),
loaded and checked here. An action is one of:
- ``start``: opens a referral with its first message, to ``recipients[0]`` unless given;
- ``refer``: ``start`` of a clue transfer, plus a copy notice to ``copy_to`` when the clue is a
  suspected crime (in the same transaction);
- ``reply``: answers a message the node holds, to that message's other party;
- ``follow_up``: sends a message of a known referral to ``recipients`` (one transaction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping


from schemas import registry as k
from schemas.documents import read_yaml

START = "start"
REPLY = "reply"
FOLLOW_UP = "follow_up"
REFER = "refer"
MODES = (START, REFER, REPLY, FOLLOW_UP)

DEFAULT_ROLES_RESOURCE = "roles.yaml"
_METHOD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELDS = frozenset({"name", "kind", "mode", "to", "copy_to", "only_when", "doc"})


class RolesError(Exception):
    """The roles file cannot be read or names something that does not exist."""


@dataclass(frozen=True)
class Action:
    name: str
    kind: str
    mode: str
    recipients: tuple[str, ...] = ()
    doc: str = ""
    # Default recipients that get the message only when a body field has a value, e.g. the
    # court hears of a prosecution decision only when it is to prosecute.
    only_when: tuple[tuple[str, str, str], ...] = ()
    copy_to: str | None = None  # refer: who gets the copy of a suspected-crime clue

    def default_recipients(self, body) -> list[str]:
        skip = {agency for agency, field, value in self.only_when if body.get(field) != value}
        return [agency for agency in self.recipients if agency not in skip]


Roles = Mapping[str, tuple[Action, ...]]


def load_roles(path: str | Path | None, agencies: Iterable[str]) -> dict[str, tuple[Action, ...]]:
    """The configured agencies' actions from ``path`` (None: the shipped file). Raises
    RolesError naming the agency, the action and what is wrong."""
    data = read_yaml(path, "services", DEFAULT_ROLES_RESOURCE, RolesError, "the roles file")
    return roles_from_data(data or {}, agencies, str(path or DEFAULT_ROLES_RESOURCE))


def roles_from_data(data, agencies: Iterable[str], shown: str = "roles") -> dict[str, tuple[Action, ...]]:
    if not isinstance(data, Mapping):
        raise RolesError(f"{shown}: must map agency codes to lists of actions")
    agencies = list(agencies)
    roles = {}
    for agency, entries in data.items():
        if not isinstance(entries, list):
            raise RolesError(f"{shown}: {agency}: must be a list of actions")
        actions = tuple(_action(entry, f"{shown}: {agency}") for entry in entries)
        names = [a.name for a in actions] + [f"{a.name}s" for a in actions if a.mode == REFER]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise RolesError(f"{shown}: {agency}: more than one method named {', '.join(repeated)}")
        if agency in agencies:  # an agency that is not configured has no node
            roles[agency] = actions
    return roles


def _action(entry, where: str) -> Action:
    if not isinstance(entry, Mapping):
        raise RolesError(f"{where}: each action must be a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not _METHOD_NAME.match(name):
        raise RolesError(f"{where}: action name {name!r} must match {_METHOD_NAME.pattern}")
    where = f"{where}.{name}"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise RolesError(f"{where}: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(_FIELDS))})")
    kind, mode = entry.get("kind"), entry.get("mode")
    if kind not in k.KINDS:
        raise RolesError(f"{where}: kind {kind!r} is not a message kind")
    if mode not in MODES:
        raise RolesError(f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")
    recipients = entry.get("to") or []
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise RolesError(f"{where}: to must be a list of agency codes")
    if mode in (START, REFER, FOLLOW_UP) and not recipients:
        raise RolesError(f"{where}: a {mode} action needs its default recipients (to)")
    copy_to = entry.get("copy_to")
    if copy_to is not None and (mode != REFER or not isinstance(copy_to, str)):
        raise RolesError(f"{where}: copy_to is one agency code, for a refer action only")
    if mode == REFER and kind != k.CLUE_TRANSFER:
        raise RolesError(f"{where}: a refer action sends {k.CLUE_TRANSFER}, not {kind}")
    only_when = []
    for recipient, condition in (entry.get("only_when") or {}).items():
        if recipient not in recipients or not isinstance(condition, Mapping) or len(condition) != 1:
            raise RolesError(f"{where}: only_when maps one of its recipients (to) to {{field: value}}")
        [(field, value)] = condition.items()
        only_when.append((recipient, str(field), value))
    # A recipient that is not configured is not an error here (the shipped file serves a bus
    # of fewer agencies): the route table refuses the message, with its rule, when it is sent.
    return Action(name, kind, mode, tuple(recipients), str(entry.get("doc") or ""), tuple(only_when), copy_to)


def check_routes(roles: Roles, routes, agencies: Iterable[str]) -> None:
    """Every default recipient (and copy target) of a configured agency must be one the route
    table lets the agency send that kind to: else the action could never send by default."""
    agencies = set(agencies)
    for agency, actions in roles.items():
        for action in actions:
            sends = [(action.kind, recipient) for recipient in action.recipients]
            if action.copy_to:
                sends.append((k.COPY_NOTICE, action.copy_to))
            for kind, recipient in sends:
                if recipient in agencies and not routes.allows(kind, agency, recipient):
                    raise RolesError(f"roles: {agency}.{action.name} sends {kind} to {recipient} by default, "
                                     f"but the route table (ROUTES_FILE) does not allow it")


def first_refer_action(actions: Iterable[Action]) -> Action | None:
    """The agency's clue-referring action (its first ``refer``), or None."""
    return next((action for action in actions if action.mode == REFER), None)
