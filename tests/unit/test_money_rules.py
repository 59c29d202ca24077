"""Money rules per jurisdiction (services/domain/money.py): whistle-blower rewards checked by the
agency nodes (refused when sent, rejected when received, with ``reward.rule_broken``; or only
flagged), and fines outside 2-5 times the amount obtained counted in the office's statistics.

The shipped rules (OFFICE.REWARD_RULES in services/cluebus.yaml): Wuhan, 2% of the verified
amount, 3% for an insider, at most 100,000 yuan per case; national, at least 200 and at most
200,000 yuan per case; the jurisdiction by default ``national``. The node tests use real keys
and SQLite databases (no broker), like tests/unit/test_office_actions.py.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest

from services import bootstrap
from services import config as c
from services.config import load_config
from services.domain.money import (FLAG, MoneyRuleError, RewardRuleBroken, check_reward, enforce_reward,
                                   load_money_rules)
from services.handlers import receiving, sending
from services.office.model import ObservedMessage
from services.office.stats import compute_stats
from services.protocol import rules as codes
from tests.fixtures.bodies import sample_body

UTC = timezone.utc
MS, FIN, HEALTH = "medical_security", "finance", "health"
SHIPPED = load_config(environ={})
RULES = load_money_rules(SHIPPED[c.OFFICE])

VERIFIED = 128_645_000             # 1,286,450.00 yuan
WUHAN_SHARE = 2_572_900            # 2%
WUHAN_INSIDER_SHARE = 3_859_350    # 3%


def request(reward_fen, *, rule_set="wuhan", verified=VERIFIED, insider=False) -> dict:
    body = dict(sample_body("reward_request"))
    body.update(reward_fen=reward_fen, rule_set=rule_set, verified_amount_fen=verified, insider=insider)
    return body


def check(body, kind="reward_request", request_body=None):
    return check_reward(RULES, kind, body, request_body)


# -- the shipped rules ----------------------------------------------------------------------------------

def test_the_shipped_rules():
    assert RULES.jurisdiction == "national"
    wuhan, national = RULES.rewards["wuhan"], RULES.rewards["national"]
    assert (wuhan.rate_percent, wuhan.insider_rate_percent, wuhan.max_fen, wuhan.min_fen) == (2, 3, 10_000_000, None)
    assert (national.rate_percent, national.min_fen, national.max_fen) == (None, 20_000, 20_000_000)
    assert wuhan.on_violation == national.on_violation == "reject"
    [fine] = RULES.fines
    assert (fine.min_multiple, fine.max_multiple, fine.kinds, fine.senders) == (2, 5, {"handling_result"}, {MS})


def test_wuhan_two_percent_of_the_verified_amount():
    assert check(request(WUHAN_SHARE)) is None
    for wrong in (WUHAN_SHARE + 1, WUHAN_SHARE - 1, WUHAN_INSIDER_SHARE):
        finding = check(request(wrong))
        assert finding is not None and finding.rejects and finding.rule.name == "wuhan"
        assert "2% of the verified 1,286,450.00 yuan" in finding.detail and "25,729.00" in finding.detail


def test_wuhan_three_percent_for_an_insider():
    assert check(request(WUHAN_INSIDER_SHARE, insider=True)) is None
    finding = check(request(WUHAN_SHARE, insider=True))
    assert finding is not None and "an insider's 3%" in finding.detail


def test_wuhan_at_most_100000_yuan_per_case():
    huge = 600_000_000  # 6,000,000 yuan verified: 2% would be 120,000 yuan
    assert check(request(10_000_000, verified=huge)) is None
    finding = check(request(12_000_000, verified=huge))
    assert finding is not None and "exceeds the most per case, 100,000.00 yuan" in finding.detail
    assert check(request(9_999_999, verified=huge)) is not None  # the capped share is exactly 100,000


def test_wuhan_share_to_the_fen_either_rounding():
    # 2% of 123.45 yuan is 2.469 yuan: 2.46 or 2.47 are the share to the fen.
    assert check(request(246, verified=12_345)) is None
    assert check(request(247, verified=12_345)) is None
    assert check(request(245, verified=12_345)) is not None
    assert check(request(248, verified=12_345)) is not None


def test_national_bounds_per_case():
    for fine in (20_000, 1_234_567, 20_000_000):
        assert check(request(fine, rule_set="national")) is None
    assert "below the least per case, 200.00 yuan" in check(request(19_999, rule_set="national")).detail
    assert "exceeds the most per case, 200,000.00 yuan" in check(request(20_000_001, rule_set="national")).detail


@pytest.mark.parametrize("rule_set, expected", [
    ("wuhan", "wuhan"), (" Wuhan ", "wuhan"), ("武汉市骗取医保资金举报奖励实施细则", "wuhan"), ("武汉", "wuhan"),
    ("national", "national"), ("违法违规使用医疗保障基金举报奖励办法", "national"),
    ("苏医保发[2022]12号", "national"), ("", "national"), (None, "national"),   # unknown: the jurisdiction's
])
def test_the_request_s_rule_set_picks_the_rule(rule_set, expected):
    assert RULES.reward_rule(rule_set).name == expected


def test_the_sample_request_keeps_the_national_rule():
    assert check(sample_body("reward_request")) is None  # 200,000 yuan, the national maximum


def test_a_payment_is_checked_against_the_request_it_answers():
    payment = dict(sample_body("reward_payment"), reward_fen=WUHAN_SHARE)
    assert check(payment, "reward_payment", request(WUHAN_SHARE)) is None
    assert check(dict(payment, reward_fen=WUHAN_SHARE + 100), "reward_payment", request(WUHAN_SHARE)) is not None
    # Without the request: the jurisdiction's bounds only.
    assert check(payment, "reward_payment") is None
    assert check(dict(payment, reward_fen=19_999), "reward_payment") is not None


def test_other_kinds_and_missing_rules_are_not_checked():
    assert check_reward(None, "reward_request", request(1)) is None
    assert check(request(1), kind="clue_transfer") is None
    assert check_reward(RULES, "reward_request", None) is None


def test_a_rule_that_flags_does_not_reject():
    office = copy.deepcopy(SHIPPED[c.OFFICE])
    office[c.REWARD_RULES]["wuhan"]["on_violation"] = FLAG
    flagging = load_money_rules(office)
    finding = enforce_reward(flagging, "reward_request", request(WUHAN_SHARE + 1))
    assert finding is not None and not finding.rejects
    with pytest.raises(RewardRuleBroken) as caught:
        enforce_reward(RULES, "reward_request", request(WUHAN_SHARE + 1))
    assert caught.value.rule == codes.REWARD_RULE_BROKEN == "reward.rule_broken"


def test_a_share_that_is_a_maximum():
    office = copy.deepcopy(SHIPPED[c.OFFICE])
    office[c.REWARD_RULES]["wuhan"]["rate_mode"] = "at_most"
    at_most = load_money_rules(office)
    assert check_reward(at_most, "reward_request", request(WUHAN_SHARE - 1)) is None
    assert check_reward(at_most, "reward_request", request(WUHAN_SHARE + 1)) is not None


# -- malformed rules --------------------------------------------------------------------------------------

def _office(**changes):
    office = copy.deepcopy(SHIPPED[c.OFFICE])
    for path, value in changes.items():
        target = office
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return office


@pytest.mark.parametrize("changes, message", [
    ({"REWARD_JURISDICTION": "shanghai"}, "names no rule"),
    ({"REWARD_RULES__wuhan__rate_percent": 2.5}, "float"),
    ({"REWARD_RULES__wuhan__rate_percent": "two"}, "not a number"),
    ({"REWARD_RULES__wuhan__rate_percent": "-1"}, "non-negative"),
    ({"REWARD_RULES__wuhan__max_fen": "100000"}, "whole number of fen"),
    ({"REWARD_RULES__national__min_fen": 30_000_000}, "more than max_fen"),
    ({"REWARD_RULES__wuhan__rate_mode": "roughly"}, "rate_mode"),
    ({"REWARD_RULES__wuhan__on_violation": "ignore"}, "on_violation"),
    ({"REWARD_RULES__wuhan__percent": 2}, "unknown keys"),
    ({"REWARD_RULES__national": {"description": "nothing"}}, "no rate and no bound"),
    ({"REWARD_RULES__national": {"insider_rate_percent": 3, "max_fen": 1}}, "needs rate_percent"),
    ({"FINE_RULES__0__kinds": ["fine_notice"]}, "unknown kinds"),
    ({"FINE_RULES__0__min_multiple": 6}, "more than max_multiple"),
    ({"FINE_RULES__0__max_multiple": 4.5}, "float"),
    ({"FINE_RULES__0__fine_fact": ""}, "needs fine_fact"),
    ({"FINE_RULES": {"name": "x"}}, "list"),
])
def test_malformed_money_rules_are_refused(changes, message):
    with pytest.raises(MoneyRuleError, match=message) as caught:
        load_money_rules(_office(**changes))
    assert caught.value.rule == codes.MONEY_RULE_INVALID


def test_no_money_rules_configured():
    assert load_money_rules({}) is None
    assert load_money_rules(None) is None


def test_decimal_rates_are_exact():
    rules = load_money_rules(_office(REWARD_RULES__wuhan__rate_percent="2.5"))
    assert rules.rewards["wuhan"].rate_percent == Fraction(5, 2)
    assert check_reward(rules, "reward_request", request(3_216_125)) is None  # 2.5% of 1,286,450.00


# -- fines in the statistics ---------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def _result(n, sender, amount, fine, *, at=T0, kind="handling_result", referral=None):
    return ObservedMessage(message_id=f"00000000-0000-4000-8000-{n:012d}", kind=kind, sender=sender,
                           recipient=HEALTH if sender == MS else MS, referral_id=referral or f"referral-{n}",
                           in_reply_to=None, sent_at=at, observed_at=at, sealed=False,
                           facts={"result": "penalised", "amount_recovered_fen": amount, "fine_fen": fine})


@pytest.mark.parametrize("amount, fine, flagged", [
    (100_000, 200_000, False), (100_000, 500_000, False), (100_000, 350_000, False),   # 2x, 5x, between
    (100_000, 199_999, True), (100_000, 500_001, True), (100_000, 50_000, True),
    (100_000, 0, False),        # no fine imposed
    (0, 50_000, False),         # nothing obtained to compare with
])
def test_the_fine_rule(amount, fine, flagged):
    [rule] = RULES.fines
    facts = {"amount_recovered_fen": amount, "fine_fen": fine}
    assert (rule.applies("handling_result", MS, facts) and rule.out_of_range(facts)) is flagged


def test_the_fine_rule_applies_to_its_kinds_and_senders_only():
    [rule] = RULES.fines
    facts = {"amount_recovered_fen": 100_000, "fine_fen": 1}
    assert rule.applies("handling_result", MS, facts)
    assert not rule.applies("handling_result", HEALTH, facts)   # the health commission's own penalties
    assert not rule.applies("judgment", MS, facts)               # a criminal fine (罚金) is another rule
    assert not rule.applies("handling_result", MS, {"fine_fen": 1})  # amount unknown (sealed, older body)


def test_fines_outside_the_range_are_counted_in_the_notes_of_their_period():
    messages = [
        _result(1, MS, 100_000, 300_000),                            # within 2-5x
        _result(2, MS, 100_000, 50_000, referral="referral-low"),    # 0.5x
        _result(3, MS, 100_000, 900_000, referral="referral-high"),  # 9x
        _result(4, HEALTH, 3_250_000, 500_000),                      # not the bureau's fine
        _result(5, MS, 100_000, 50_000, at=T0 + timedelta(days=40)),  # another period
    ]
    report = compute_stats(messages, [], period_from=T0 - timedelta(days=1), period_to=T0 + timedelta(days=29),
                           as_of=T0 + timedelta(days=50), agencies=[MS, HEALTH], fine_rules=RULES.fines)
    [note] = [n for n in report.notes if n.startswith("fines out of range")]
    assert "fraud_fine: 2 to 5 times amount_recovered_fen): 2 " in note
    assert "referral-high" in note and "referral-low" in note and "referral-1" not in note
    assert report.to_json()["notes"] == report.notes
    quiet = compute_stats(messages, [], period_from=T0 - timedelta(days=1), period_to=T0 + timedelta(days=29),
                          as_of=T0 + timedelta(days=50), agencies=[MS, HEALTH])
    assert not [n for n in quiet.notes if n.startswith("fines out of range")]


# -- the nodes: refused when sent, rejected when received ---------------------------------------------

@pytest.fixture
def nodes(tmp_path, key_dir, clock):
    config = load_config(environ={"CLUEBUS_DATA_DIR": str(tmp_path / "data"),
                                  "CLUEBUS_KEYS_DIR": str(key_dir.path)})
    stores = []

    def node(agency, cfg=config):
        store = bootstrap.open_store(cfg, agency)
        stores.append(store)
        return bootstrap.offline_context(cfg, agency, clock=clock, store=store)

    yield config, node
    for store in stores:
        store.dispose()


def _audit(ctx) -> list:
    with ctx.store.transaction() as repo:
        return [(entry.event, entry.detail) for entry in repo.audit_entries()]


def test_a_node_refuses_to_send_a_reward_request_that_breaks_the_rule(nodes):
    _, node = nodes
    ms = node(MS)
    assert ms.money_rules is not None and ms.money_rules.jurisdiction == "national"
    with pytest.raises(RewardRuleBroken, match="not the 2% of the verified"):
        sending.send(ms, "reward_request", FIN, request(WUHAN_SHARE + 1))
    with ms.store.transaction() as repo:
        assert repo.referrals() == []
    assert sending.send(ms, "reward_request", FIN, request(WUHAN_SHARE)).message_id


def test_the_finance_node_rejects_a_reward_request_that_breaks_the_rule(nodes):
    _, node = nodes
    ms = dataclasses.replace(node(MS), money_rules=None)   # a sender that does not check
    fin = node(FIN)
    signed = sending.send(ms, "reward_request", FIN, request(12_000_000, verified=600_000_000))
    outcome = receiving.receive(fin, signed.raw)
    assert (outcome.status, outcome.rule) == (receiving.OUTCOME_REJECTED, codes.REWARD_RULE_BROKEN)
    assert "exceeds the most per case, 100,000.00 yuan" in outcome.detail and "wuhan" in outcome.detail
    good = sending.send(ms, "reward_request", FIN, request(10_000_000, verified=600_000_000))
    assert receiving.receive(fin, good.raw).status == receiving.OUTCOME_ACCEPTED


def test_a_payment_is_checked_against_the_nodes_own_request(nodes):
    _, node = nodes
    ms, fin = node(MS), node(FIN)
    asked = sending.send(ms, "reward_request", FIN, request(WUHAN_SHARE))
    assert receiving.receive(fin, asked.raw).status == receiving.OUTCOME_ACCEPTED
    referral = asked.envelope["referral_id"]
    payment = dict(sample_body("reward_payment"), reward_fen=WUHAN_SHARE + 500)
    # The finance node holds the request: it refuses to pay more than its rule's share...
    with pytest.raises(RewardRuleBroken):
        sending.send(fin, "reward_payment", MS, payment, referral_id=referral, in_reply_to=asked.message_id)
    # ...and a finance node that does not check is rejected by the bureau, which holds it too.
    unchecked = dataclasses.replace(fin, money_rules=None)
    paid = sending.send(unchecked, "reward_payment", MS, payment, referral_id=referral, in_reply_to=asked.message_id)
    outcome = receiving.receive(ms, paid.raw)
    assert (outcome.status, outcome.rule) == (receiving.OUTCOME_REJECTED, codes.REWARD_RULE_BROKEN)


def test_a_rule_that_flags_accepts_and_audits(nodes, tmp_path):
    config, node = nodes
    flagging = copy.deepcopy(config)
    flagging[c.OFFICE][c.REWARD_RULES]["wuhan"]["on_violation"] = FLAG
    ms, fin = node(MS, flagging), node(FIN, flagging)
    signed = sending.send(ms, "reward_request", FIN, request(WUHAN_SHARE + 1))
    assert ("message.flagged", codes.REWARD_RULE_BROKEN) in [(e, d.get("rule")) for e, d in _audit(ms)]
    assert receiving.receive(fin, signed.raw).status == receiving.OUTCOME_ACCEPTED
    [flag] = [d for e, d in _audit(fin) if e == "message.flagged"]
    assert flag["rule"] == codes.REWARD_RULE_BROKEN and "wuhan" in flag["detail"]
