"""Money rules per jurisdiction, as configuration: whistle-blower rewards (举报奖励) and fines.

Plain Python, no framework. Amounts are integer fen; shares and multiples are exact fractions
(never floats). The rules are read from the configuration (``OFFICE.REWARD_RULES``,
``OFFICE.REWARD_JURISDICTION`` and ``OFFICE.FINE_RULES`` in ``services/cluebus.yaml``) and
applied in two places:

* **Rewards** by the agency nodes: a ``reward_request`` or ``reward_payment`` whose
  ``reward_fen`` breaks its rule is refused by the node that would send it and rejected by the
  node that receives it, with the rule code ``reward.rule_broken`` (or only flagged, when the
  rule says ``on_violation: flag``). See ``check_reward``.
* **Fines** by the joint office's statistics: a fine outside its range (e.g. 2 to 5 times the
  amount obtained) is counted and listed in the report's notes (``FineRule.out_of_range``).

A reward rule (one per jurisdiction, by name):

``rate_percent``, ``insider_rate_percent``
    The reward is this share of the verified amount (``verified_amount_fen``); the insider's
    share applies when the request says ``insider: true`` (the whistle-blower works, or worked,
    at the institution). Without a rate the rule only bounds the amount.
``rate_mode``
    ``exact`` (the default: the reward *is* that share, to the fen, either rounding) or
    ``at_most`` (the share is the most that may be paid).
``min_fen``, ``max_fen``
    The least and the most paid per case (the share is raised to ``min_fen`` and capped at
    ``max_fen``).
``aliases``
    Other values of a request's ``rule_set`` that name this rule (e.g. the title of the local
    rules). A request's ``rule_set`` picks the rule whose name or alias it is; any other value,
    and a payment whose request this node does not hold, gets the rule of
    ``REWARD_JURISDICTION``.
``on_violation``
    ``reject`` (the default) or ``flag``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Mapping

from schemas import registry as k
from services import config as c
from services.protocol import rules as codes

from .exceptions import DomainError

REJECT = "reject"
FLAG = "flag"
ON_VIOLATION = (REJECT, FLAG)
EXACT = "exact"
AT_MOST = "at_most"
RATE_MODES = (EXACT, AT_MOST)

REWARD_KINDS = (k.REWARD_REQUEST, k.REWARD_PAYMENT)

REWARD_KEYS = frozenset({"description", "aliases", "rate_percent", "insider_rate_percent", "rate_mode",
                         "min_fen", "max_fen", "on_violation"})
FINE_KEYS = frozenset({"name", "description", "kinds", "senders", "amount_fact", "fine_fact",
                       "min_multiple", "max_multiple"})


class MoneyRuleError(Exception):
    """A malformed money rule in the configuration."""

    rule = codes.MONEY_RULE_INVALID


class RewardRuleBroken(DomainError):
    """A reward amount that breaks its jurisdiction's rule."""

    rule = codes.REWARD_RULE_BROKEN


@dataclass(frozen=True)
class RewardRule:
    name: str
    description: str = ""
    aliases: frozenset[str] = frozenset()
    rate_percent: Fraction | None = None
    insider_rate_percent: Fraction | None = None
    rate_mode: str = EXACT
    min_fen: int | None = None
    max_fen: int | None = None
    on_violation: str = REJECT

    def share(self, verified_fen: int, insider: bool) -> Fraction | None:
        """The exact reward the rate gives (before rounding), raised to the minimum and capped;
        None without a rate."""
        rate = self.insider_rate_percent if insider and self.insider_rate_percent is not None else self.rate_percent
        if rate is None:
            return None
        amount = Fraction(verified_fen) * rate / 100
        if self.min_fen is not None:
            amount = max(amount, Fraction(self.min_fen))
        if self.max_fen is not None:
            amount = min(amount, Fraction(self.max_fen))
        return amount

    def problem(self, reward_fen: int, verified_fen: int | None = None, insider: bool | None = None) -> str | None:
        """Why ``reward_fen`` breaks this rule, or None. Without the verified amount only the
        bounds are checked."""
        yuan = _yuan
        if self.max_fen is not None and reward_fen > self.max_fen:
            return f"reward {yuan(reward_fen)} yuan exceeds the most per case, {yuan(self.max_fen)} yuan"
        if self.min_fen is not None and reward_fen < self.min_fen:
            return f"reward {yuan(reward_fen)} yuan is below the least per case, {yuan(self.min_fen)} yuan"
        if verified_fen is None:
            return None
        share = self.share(verified_fen, bool(insider))
        if share is None:
            return None
        rate = self.insider_rate_percent if insider and self.insider_rate_percent is not None else self.rate_percent
        low, high = math.floor(share), math.ceil(share)
        who = "an insider's" if insider and self.insider_rate_percent is not None else "the"
        what = (f"{who} {_percent(rate)}% of the verified {yuan(verified_fen)} yuan"
                + (f", at most {yuan(self.max_fen)}" if self.max_fen is not None else "")
                + (f", at least {yuan(self.min_fen)}" if self.min_fen is not None else ""))
        if self.rate_mode == EXACT and not low <= reward_fen <= high:
            return f"reward {yuan(reward_fen)} yuan is not {what}: {yuan(low)} yuan"
        if self.rate_mode == AT_MOST and reward_fen > high:
            return f"reward {yuan(reward_fen)} yuan is more than {what}: {yuan(high)} yuan"
        return None


@dataclass(frozen=True)
class FineRule:
    """A fine (``fine_fact``) must lie between ``min_multiple`` and ``max_multiple`` times the
    amount obtained (``amount_fact``), in the messages of ``kinds`` from ``senders``."""

    name: str
    kinds: frozenset[str]
    amount_fact: str
    fine_fact: str
    min_multiple: Fraction
    max_multiple: Fraction
    senders: frozenset[str] | None = None
    description: str = ""

    def applies(self, kind: str, sender: str, facts: Mapping | None) -> bool:
        """Whether a message is one this rule checks: its kind and sender, and both amounts
        known, with a fine imposed (a fine of 0 is no fine) on a positive amount."""
        if kind not in self.kinds or (self.senders is not None and sender not in self.senders) or not facts:
            return False
        amount, fine = facts.get(self.amount_fact), facts.get(self.fine_fact)
        return _fen(amount) and _fen(fine) and amount > 0 and fine > 0

    def out_of_range(self, facts: Mapping) -> bool:
        amount, fine = Fraction(facts[self.amount_fact]), Fraction(facts[self.fine_fact])
        return not self.min_multiple * amount <= fine <= self.max_multiple * amount


@dataclass(frozen=True)
class MoneyRules:
    jurisdiction: str
    rewards: Mapping[str, RewardRule] = field(default_factory=dict)
    fines: tuple[FineRule, ...] = ()

    def reward_rule(self, rule_set: str | None) -> RewardRule | None:
        """The rule a request's ``rule_set`` names (by name or alias), else the jurisdiction's."""
        wanted = _key(rule_set) if isinstance(rule_set, str) else None
        if wanted:
            for rule in self.rewards.values():
                if wanted == _key(rule.name) or wanted in {_key(alias) for alias in rule.aliases}:
                    return rule
        return self.rewards.get(self.jurisdiction)


@dataclass(frozen=True)
class Finding:
    """A reward amount that breaks ``rule``: rejected, or flagged when the rule says so."""

    rule: RewardRule
    detail: str

    @property
    def rejects(self) -> bool:
        return self.rule.on_violation == REJECT


def check_reward(rules: MoneyRules | None, kind: str, body: Mapping | None,
                 request: Mapping | None = None) -> Finding | None:
    """The breach of a reward rule by a ``reward_request`` body, or by a ``reward_payment``
    body (``request``: the body of the request it answers, when this node holds it); None when
    the amount keeps the rule, when no rule applies or the body is unknown."""
    if rules is None or kind not in REWARD_KINDS or not body or not _fen(body.get("reward_fen")):
        return None
    source = body if kind == k.REWARD_REQUEST else (request or {})
    rule = rules.reward_rule(source.get("rule_set"))
    if rule is None:
        return None
    verified = source.get("verified_amount_fen")
    verified = verified if _fen(verified) else None
    problem = rule.problem(body["reward_fen"], verified, source.get("insider") is True)
    if problem is None:
        return None
    return Finding(rule, f"{kind}: {problem} (reward rule {rule.name}"
                         + (f": {rule.description}" if rule.description else "") + ")")


def enforce_reward(rules: MoneyRules | None, kind: str, body: Mapping | None,
                   request: Mapping | None = None) -> Finding | None:
    """``check_reward``, raising RewardRuleBroken for a rule that rejects; a flagged finding
    is returned for the caller to record."""
    finding = check_reward(rules, kind, body, request)
    if finding is not None and finding.rejects:
        raise RewardRuleBroken(finding.detail)
    return finding


# -- loading --------------------------------------------------------------------------------------
def load_money_rules(office: Mapping | None) -> MoneyRules | None:
    """From the OFFICE section (keys REWARD_JURISDICTION, REWARD_RULES, FINE_RULES); None when
    it configures no reward rule and no fine rule."""
    office = office or {}
    reward_entries = office.get(c.REWARD_RULES) or {}
    fine_entries = office.get(c.FINE_RULES) or []
    if not reward_entries and not fine_entries:
        return None
    if not isinstance(reward_entries, Mapping):
        raise MoneyRuleError(f"{c.REWARD_RULES} must map a jurisdiction's name to its reward rule")
    rewards = {str(name): _reward_rule(str(name), entry) for name, entry in reward_entries.items()}
    jurisdiction = office.get(c.REWARD_JURISDICTION)
    if rewards and str(jurisdiction or "") not in rewards:
        raise MoneyRuleError(f"{c.REWARD_JURISDICTION} {jurisdiction!r} names no rule of {c.REWARD_RULES} "
                             f"({', '.join(sorted(rewards))})")
    if isinstance(fine_entries, (str, Mapping)) or not isinstance(fine_entries, Iterable):
        raise MoneyRuleError(f"{c.FINE_RULES} must be a list of fine rules")
    fines = tuple(_fine_rule(position, entry) for position, entry in enumerate(fine_entries, start=1))
    names = [rule.name for rule in fines]
    if len(names) != len(set(names)):
        raise MoneyRuleError(f"{c.FINE_RULES}: duplicate rule names {sorted(names)}")
    return MoneyRules(str(jurisdiction or ""), rewards, fines)


def _reward_rule(name: str, entry) -> RewardRule:
    where = f"reward rule {name!r}"
    if not isinstance(entry, Mapping):
        raise MoneyRuleError(f"{where} is not a mapping")
    unknown = sorted(set(entry) - REWARD_KEYS)
    if unknown:
        raise MoneyRuleError(f"{where} has unknown keys {unknown} (expected {sorted(REWARD_KEYS)})")
    rule = RewardRule(
        name=name, description=str(entry.get("description") or ""),
        aliases=frozenset(str(a) for a in _list(entry.get("aliases"), f"{where}: aliases")),
        rate_percent=_fraction(entry.get("rate_percent"), f"{where}: rate_percent"),
        insider_rate_percent=_fraction(entry.get("insider_rate_percent"), f"{where}: insider_rate_percent"),
        rate_mode=entry.get("rate_mode", EXACT),
        min_fen=_amount(entry.get("min_fen"), f"{where}: min_fen"),
        max_fen=_amount(entry.get("max_fen"), f"{where}: max_fen"),
        on_violation=entry.get("on_violation", REJECT))
    if rule.rate_mode not in RATE_MODES:
        raise MoneyRuleError(f"{where}: rate_mode must be one of {', '.join(RATE_MODES)}")
    if rule.on_violation not in ON_VIOLATION:
        raise MoneyRuleError(f"{where}: on_violation must be one of {', '.join(ON_VIOLATION)}")
    if rule.insider_rate_percent is not None and rule.rate_percent is None:
        raise MoneyRuleError(f"{where}: insider_rate_percent needs rate_percent")
    if rule.min_fen is not None and rule.max_fen is not None and rule.min_fen > rule.max_fen:
        raise MoneyRuleError(f"{where}: min_fen is more than max_fen")
    if rule.rate_percent is None and rule.min_fen is None and rule.max_fen is None:
        raise MoneyRuleError(f"{where} sets no rate and no bound")
    return rule


def _fine_rule(position: int, entry) -> FineRule:
    if not isinstance(entry, Mapping):
        raise MoneyRuleError(f"fine rule #{position} is not a mapping")
    where = f"fine rule {entry.get('name', f'#{position}')!r}"
    unknown = sorted(set(entry) - FINE_KEYS)
    if unknown:
        raise MoneyRuleError(f"{where} has unknown keys {unknown} (expected {sorted(FINE_KEYS)})")
    missing = [key for key in ("name", "kinds", "amount_fact", "fine_fact", "min_multiple", "max_multiple")
               if entry.get(key) in (None, "", [])]
    if missing:
        raise MoneyRuleError(f"{where} needs {', '.join(missing)}")
    kinds = frozenset(str(kind) for kind in _list(entry["kinds"], f"{where}: kinds"))
    unknown_kinds = sorted(kinds - set(k.KINDS))
    if unknown_kinds:
        raise MoneyRuleError(f"{where}: unknown kinds {unknown_kinds}")
    senders = entry.get("senders")
    rule = FineRule(name=str(entry["name"]), description=str(entry.get("description") or ""), kinds=kinds,
                    senders=frozenset(str(s) for s in _list(senders, f"{where}: senders")) if senders else None,
                    amount_fact=str(entry["amount_fact"]), fine_fact=str(entry["fine_fact"]),
                    min_multiple=_fraction(entry["min_multiple"], f"{where}: min_multiple"),
                    max_multiple=_fraction(entry["max_multiple"], f"{where}: max_multiple"))
    if rule.min_multiple > rule.max_multiple:
        raise MoneyRuleError(f"{where}: min_multiple is more than max_multiple")
    return rule


def _list(value, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise MoneyRuleError(f"{where} must be a list")
    return list(value)


def _fraction(value, where: str) -> Fraction | None:
    """An exact non-negative number from an integer or a decimal string; floats are refused."""
    if value is None:
        return None
    if isinstance(value, float):
        raise MoneyRuleError(f"{where}: {value!r} is a float; write it as a string, e.g. '{value}'")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MoneyRuleError(f"{where}: {value!r} is not a number")
    text = str(value).strip()
    try:
        number = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise MoneyRuleError(f"{where}: {value!r} is not a number") from None
    if number < 0 or "/" in text:
        raise MoneyRuleError(f"{where}: {value!r} must be a non-negative decimal number")
    return number


def _amount(value, where: str) -> int | None:
    if value is None:
        return None
    if not _fen(value):
        raise MoneyRuleError(f"{where}: {value!r} is not a whole number of fen")
    return value


def _fen(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _key(text: str) -> str:
    return text.strip().casefold()


def _yuan(fen) -> str:
    fen = int(fen)
    return f"{fen // 100:,}.{fen % 100:02d}"


def _percent(rate: Fraction) -> str:
    """A configured decimal rate as written (it came from a decimal string, so it is exact)."""
    return format((Decimal(rate.numerator) / Decimal(rate.denominator)).normalize(), "f")
