"""The route table: which agency may send which kind to which agency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from .documents import read_yaml
from .exceptions import ForbiddenRoute, RouteTableError
from .registry import KINDS

DEFAULT_ROUTES_RESOURCE = "routes.yaml"


@dataclass(frozen=True)
class RouteTable:
    routes: Mapping[str, frozenset[tuple[str, str]]]
    reply_kinds: frozenset[str]
    # When set (see restricted_to), only these agencies take part at all.
    agencies: frozenset[str] | None = None
    # Kinds any configured agency may send any other (reconciliation), part of no referral.
    peer_kinds: frozenset[str] = frozenset()

    def allows(self, kind: str, sender: str, recipient: str) -> bool:
        if self.agencies is not None and not {sender, recipient} <= self.agencies:
            return False
        if kind in self.reply_kinds or kind in self.peer_kinds:
            # A reply answers whatever arrived, even a message that was itself refused
            # (a rejection receipt for a forbidden route must still reach its sender).
            return sender != recipient
        return (sender, recipient) in self.routes.get(kind, frozenset())

    def check(self, kind: str, sender: str, recipient: str) -> None:
        if not self.allows(kind, sender, recipient):
            raise ForbiddenRoute(f"{sender} may not send {kind} to {recipient}")

    def recipients(self, kind: str, sender: str) -> list[str]:
        return sorted(r for s, r in self.routes.get(kind, ()) if s == sender)

    def restricted_to(self, agencies: Iterable[str]) -> "RouteTable":
        """The table without routes that involve an agency not in ``agencies``."""
        known = set(agencies)
        return RouteTable(
            {kind: frozenset((s, r) for s, r in pairs if s in known and r in known)
             for kind, pairs in self.routes.items()},
            self.reply_kinds, frozenset(known), self.peer_kinds)

    @property
    def any_pair_kinds(self) -> frozenset[str]:
        """Kinds allowed from any configured agency to any other: replies and peer kinds."""
        return self.reply_kinds | self.peer_kinds

    @classmethod
    def from_data(cls, data: Mapping) -> "RouteTable":
        if not isinstance(data, Mapping) or not isinstance(data.get("routes"), Mapping):
            raise RouteTableError("route table needs a 'routes' mapping")
        reply_kinds = frozenset(data.get("reply_kinds") or ())
        peer_kinds = frozenset(data.get("peer_kinds") or ())
        if reply_kinds & peer_kinds:
            raise RouteTableError(f"kinds {sorted(reply_kinds & peer_kinds)} are listed as reply and peer kinds")
        routes: dict[str, frozenset[tuple[str, str]]] = {}
        for kind, pairs in data["routes"].items():
            if kind not in KINDS:
                raise RouteTableError(f"route table names unknown kind {kind!r}")
            if kind in reply_kinds or kind in peer_kinds:
                raise RouteTableError(f"{'reply' if kind in reply_kinds else 'peer'} kind {kind!r} takes no explicit routes")
            checked = set()
            for pair in pairs or ():
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or not all(isinstance(a, str) for a in pair) or pair[0] == pair[1]):
                    raise RouteTableError(f"route {pair!r} of {kind!r} is not [sender, recipient]")
                checked.add((pair[0], pair[1]))
            routes[kind] = frozenset(checked)
        for kind in reply_kinds | peer_kinds:
            if kind not in KINDS:
                raise RouteTableError(f"route table names unknown {'reply' if kind in reply_kinds else 'peer'} "
                                      f"kind {kind!r}")
        return cls(routes, reply_kinds, peer_kinds=peer_kinds)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "RouteTable":
        return cls.from_data(read_yaml(path, "schemas", DEFAULT_ROUTES_RESOURCE, RouteTableError, "route table"))
