"""Deadline rules as data, loaded from the configuration (OFFICE DEADLINES)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from schemas.registry import KINDS
from services.protocol.rules import DEADLINE_RULE_INVALID

RECIPIENT = "recipient"
SENDER = "sender"
REPLY = "reply"
REFERRAL = "referral"
MESSAGE = "message"
INTERVAL = "interval"
UNITS = ("hours", "days")


class RuleError(Exception):
    rule = DEADLINE_RULE_INVALID


@dataclass(frozen=True)
class DeadlineRule:
    name: str
    description: str
    starts_on: frozenset[str]
    late: str
    limit: int
    unit: str
    type: str = MESSAGE
    stops_on: frozenset[str] = frozenset()
    match: str = REFERRAL
    start_recipients: frozenset[str] | None = None
    start_outcome: str | None = None
    start_fact: str | None = None
    stop_fact: str | None = None

    def opened_by(self, kind: str, recipient: str, facts: Mapping) -> bool:
        if kind not in self.starts_on:
            return False
        if self.start_recipients is not None and recipient not in self.start_recipients:
            return False
        if self.start_outcome is not None and self.start_outcome not in _outcomes(facts):
            return False
        return True


def _outcomes(facts: Mapping) -> set:
    return {value for key, value in facts.items() if key in ("decision", "outcome", "direction", "result")}


KNOWN_KEYS = frozenset({"name", "description", "type", "starts_on", "stops_on", "match", "late", "limit",
                        "unit", "start_recipients", "start_outcome", "start_fact", "stop_fact"})


def _whole_number(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"limit {value!r} is not a whole number")
    return int(value)


def load_rules(entries: Iterable[Mapping]) -> list[DeadlineRule]:
    rules = []
    names = set()
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise RuleError(f"deadline rule #{position} is not a mapping: {entry!r}")
        unknown_keys = set(entry) - KNOWN_KEYS
        if unknown_keys:
            raise RuleError(f"deadline rule {entry.get('name', f'#{position}')!r} has unknown keys "
                            f"{sorted(unknown_keys)}")
        try:
            rule = DeadlineRule(
                name=str(entry["name"]), description=str(entry.get("description", "")),
                starts_on=frozenset(entry["starts_on"]), late=entry["late"], limit=_whole_number(entry["limit"]),
                unit=entry["unit"], type=entry.get("type", MESSAGE),
                stops_on=frozenset(entry.get("stops_on", ())), match=entry.get("match", REFERRAL),
                start_recipients=frozenset(entry["start_recipients"]) if entry.get("start_recipients") else None,
                start_outcome=entry.get("start_outcome"), start_fact=entry.get("start_fact"),
                stop_fact=entry.get("stop_fact"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"deadline rule {entry.get('name', '?')!r} is malformed: {exc}") from None
        problems = []
        if rule.name in names:
            problems.append("duplicate name")
        if rule.late not in (RECIPIENT, SENDER):
            problems.append(f"late must be {RECIPIENT} or {SENDER}")
        if rule.unit not in UNITS or rule.limit < 0:
            problems.append("limit must be a non-negative number of hours or days")
        if rule.type not in (MESSAGE, INTERVAL):
            problems.append(f"type must be {MESSAGE} or {INTERVAL}")
        if rule.type == MESSAGE and (not rule.stops_on or rule.match not in (REPLY, REFERRAL)):
            problems.append("a message rule needs stops_on and match reply|referral")
        if rule.type == INTERVAL and not (rule.start_fact and rule.stop_fact):
            problems.append("an interval rule needs start_fact and stop_fact")
        unknown = (rule.starts_on | rule.stops_on) - set(KINDS)
        if unknown:
            problems.append(f"unknown kinds {sorted(unknown)}")
        if problems:
            raise RuleError(f"deadline rule {rule.name!r}: {'; '.join(problems)}")
        names.add(rule.name)
        rules.append(rule)
    return rules
