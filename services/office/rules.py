"""Deadline rules as data, loaded from the configuration (OFFICE DEADLINES)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from schemas.registry import KINDS
from services.protocol.rules import DEADLINE_RULE_INVALID

from .calendar import COUNT_FROM, HOURS, NEXT_HOUR, UNITS

RECIPIENT = "recipient"
SENDER = "sender"
REPLY = "reply"
REFERRAL = "referral"
MESSAGE = "message"
INTERVAL = "interval"
SENT_AT = "sent_at"
# The body facts a start_outcome / since_outcome is compared with.
OUTCOME_FACTS = ("decision", "outcome", "direction", "result")


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
    # Hours: from the next whole hour (the law's rule) or from the instant ("exact").
    count_from: str = NEXT_HOUR
    # Only when the starting message's facts have these values (e.g. category suspected_crime).
    start_facts: tuple[tuple[str, object], ...] | None = None
    # A referral-matched answer sent to one of these instead of the counterpart.
    stop_recipients: frozenset[str] | None = None
    # An interval that starts at the latest earlier message of this kind (with this outcome)
    # addressed to the starting message's sender.
    since: str | None = None
    since_outcome: str | None = None

    def opened_by(self, kind: str, recipient: str, facts: Mapping) -> bool:
        if kind not in self.starts_on:
            return False
        if self.start_recipients is not None and recipient not in self.start_recipients:
            return False
        if self.start_outcome is not None and self.start_outcome not in outcomes(facts):
            return False
        if self.start_facts and any(facts.get(name) != value for name, value in self.start_facts):
            return False
        return True

    def since_matches(self, kind: str, facts: Mapping) -> bool:
        """Whether a message may be where this interval rule's period starts."""
        return (self.since is not None and kind == self.since
                and (self.since_outcome is None or self.since_outcome in outcomes(facts)))


def outcomes(facts: Mapping) -> set:
    return {value for key, value in facts.items() if key in OUTCOME_FACTS}


KNOWN_KEYS = frozenset({"name", "description", "type", "starts_on", "stops_on", "match", "late", "limit",
                        "unit", "start_recipients", "start_outcome", "start_fact", "stop_fact", "count_from",
                        "start_facts", "stop_recipients", "since", "since_outcome"})


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
                stop_fact=entry.get("stop_fact"),
                count_from=entry.get("count_from", NEXT_HOUR),
                start_facts=tuple(sorted(dict(entry["start_facts"]).items())) if entry.get("start_facts") else None,
                stop_recipients=frozenset(entry["stop_recipients"]) if entry.get("stop_recipients") else None,
                since=entry.get("since"), since_outcome=entry.get("since_outcome"))
        except (KeyError, TypeError, ValueError) as exc:
            raise RuleError(f"deadline rule {entry.get('name', '?')!r} is malformed: {exc}") from None
        problems = []
        if rule.name in names:
            problems.append("duplicate name")
        if rule.late not in (RECIPIENT, SENDER):
            problems.append(f"late must be {RECIPIENT} or {SENDER}")
        if rule.unit not in UNITS or rule.limit < 0:
            problems.append(f"limit must be a non-negative number of {', '.join(UNITS)}")
        if "count_from" in entry and rule.unit != HOURS:
            problems.append("count_from applies to hours only (a period in days or months never counts "
                            "its starting day)")
        if rule.count_from not in COUNT_FROM:
            problems.append(f"count_from must be one of {', '.join(COUNT_FROM)}")
        if rule.type not in (MESSAGE, INTERVAL):
            problems.append(f"type must be {MESSAGE} or {INTERVAL}")
        if rule.type == MESSAGE and (not rule.stops_on or rule.match not in (REPLY, REFERRAL)):
            problems.append("a message rule needs stops_on and match reply|referral")
        if rule.type == MESSAGE and (rule.since or rule.since_outcome or rule.start_fact or rule.stop_fact):
            problems.append("since, since_outcome, start_fact and stop_fact belong to interval rules")
        if rule.stop_recipients is not None and rule.match != REFERRAL:
            problems.append("stop_recipients needs match referral")
        if rule.type == INTERVAL and (bool(rule.start_fact) == bool(rule.since) or not rule.stop_fact):
            problems.append("an interval rule needs stop_fact and either start_fact or since")
        if rule.type == INTERVAL and (rule.stops_on or rule.stop_recipients):
            problems.append("an interval rule has no stops_on or stop_recipients")
        if rule.since_outcome and not rule.since:
            problems.append("since_outcome needs since")
        if entry.get("start_facts") is not None and not isinstance(entry.get("start_facts"), Mapping):
            problems.append("start_facts must map fact names to values")
        unknown = (rule.starts_on | rule.stops_on | ({rule.since} if rule.since else set())) - set(KINDS)
        if unknown:
            problems.append(f"unknown kinds {sorted(unknown)}")
        if problems:
            raise RuleError(f"deadline rule {rule.name!r}: {'; '.join(problems)}")
        names.add(rule.name)
        rules.append(rule)
    return rules
