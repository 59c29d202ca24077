"""Each agency's role RPCs come from the roles file (ROLES_FILE): the shipped table, a
deployment's own one, and clear errors for one that names what does not exist."""

from __future__ import annotations

import pytest

from schemas import registry as k
from services import config as c
from services import settings
from services.nodes.base import AgencyNode
from services.nodes.factory import build_node_service
from services.roles import FOLLOW_UP, REFER, RolesError, load_roles, roles_from_data

AGENCIES = ["medical_security", "public_security", "procuratorate", "court", "health", "finance", "joint_office"]


@pytest.fixture
def config():
    return c.load_config(environ={})


def test_the_shipped_roles_give_each_agency_its_methods(config):
    roles = settings.role_actions(config)
    assert sorted(roles) == sorted(a for a in AGENCIES if a != "joint_office")  # the office observes
    refer = settings.refer_action(config, "medical_security")
    assert (refer.name, refer.kind, refer.mode, refer.recipients, refer.copy_to) == \
        ("refer_clue", k.CLUE_TRANSFER, REFER, ("public_security",), "procuratorate")
    assert settings.refer_action(config, "health").recipients == ("medical_security",)
    assert settings.refer_action(config, "public_security") is None
    prosecution = next(a for a in roles["procuratorate"] if a.name == "decide_prosecution")
    assert prosecution.mode == FOLLOW_UP and prosecution.only_when == (("court", "decision", "prosecute"),)


def test_a_node_has_the_methods_its_role_names(config):
    service = build_node_service("medical_security", config)
    for name in ("refer_clue", "refer_clues", "request_supervision", "request_reward"):
        assert callable(getattr(service, name)), name
    assert not hasattr(build_node_service("court", config), "refer_clue")


def test_a_deployment_with_other_codes_names_its_own_roles(tmp_path, config):
    """A province's bus with prefixed codes: the roles (and the copy target) follow the file."""
    roles_file = tmp_path / "roles.yaml"
    roles_file.write_text(
        "xian_medical_security:\n"
        "  - {name: refer_clue, kind: clue_transfer, mode: refer, to: [xian_public_security],\n"
        "     copy_to: xian_procuratorate, doc: Transfer a clue.}\n", encoding="utf-8")
    roles = load_roles(roles_file, ["xian_medical_security", "xian_public_security", "xian_procuratorate"])
    [refer] = roles["xian_medical_security"]
    assert refer.recipients == ("xian_public_security",) and refer.copy_to == "xian_procuratorate"
    # An agency the deployment does not configure has no node, so its role is ignored.
    assert load_roles(roles_file, ["xian_public_security"]) == {}


@pytest.mark.parametrize("entry, says", [
    ({"name": "Refer-Clue", "kind": "clue_transfer", "mode": "refer", "to": ["b"]}, "action name"),
    ({"name": "refer_clue", "kind": "clue_transfers", "mode": "refer", "to": ["b"]}, "is not a message kind"),
    ({"name": "refer_clue", "kind": "clue_transfer", "mode": "forward", "to": ["b"]}, "is not one of"),
    ({"name": "refer_clue", "kind": "clue_transfer", "mode": "refer"}, "needs its default recipients"),
    ({"name": "refer_clue", "kind": "clue_transfer", "mode": "refer", "to": "b"}, "to must be a list"),
    ({"name": "decide", "kind": "filing_decision", "mode": "reply", "copy_to": "c"}, "for a refer action only"),
    ({"name": "refer", "kind": "judgment", "mode": "refer", "to": ["b"]}, "a refer action sends clue_transfer"),
    ({"name": "tell", "kind": "judgment", "mode": "follow_up", "to": ["b"], "only_when": {"c": {"x": 1}}},
     "only_when maps one of its recipients"),
    ({"name": "tell", "kind": "judgment", "mode": "follow_up", "to": ["b"], "cc": ["c"]}, "unknown field(s) cc"),
])
def test_a_roles_file_naming_what_does_not_exist_is_refused_with_where(entry, says):
    with pytest.raises(RolesError, match="roles: a") as raised:
        roles_from_data({"a": [entry]}, ["a", "b", "c"])
    assert says in str(raised.value)


def test_two_methods_of_one_name_are_refused():
    refer = {"name": "refer_clue", "kind": "clue_transfer", "mode": "refer", "to": ["b"]}
    clash = {"name": "refer_clues", "kind": "finding_notice", "mode": "start", "to": ["b"]}
    with pytest.raises(RolesError, match="more than one method named refer_clues"):
        roles_from_data({"a": [refer, clash]}, ["a", "b"])


def test_a_role_method_may_not_replace_one_of_the_nodes_own(tmp_path, config):
    assert hasattr(AgencyNode, "send")
    roles_file = tmp_path / "roles.yaml"
    roles_file.write_text("court:\n  - {name: send, kind: judgment, mode: follow_up, to: [procuratorate]}\n",
                          encoding="utf-8")
    with pytest.raises(RolesError, match=r"court\.send \(ROLES_FILE\) would replace the node's own send"):
        build_node_service("court", {**config, c.ROLES_FILE: str(roles_file)})


def test_an_unreadable_roles_file_says_which(tmp_path):
    with pytest.raises(RolesError, match="cannot read the roles file .*missing.yaml"):
        load_roles(tmp_path / "missing.yaml", AGENCIES)


def test_a_default_recipient_the_route_table_refuses_is_refused_at_load(tmp_path, config):
    roles_file = tmp_path / "roles.yaml"
    roles_file.write_text("court:\n  - {name: report_finding, kind: finding_notice, mode: start, to: [finance]}\n",
                          encoding="utf-8")
    with pytest.raises(RolesError, match=r"court\.report_finding sends finding_notice to finance by default, "
                                         r"but the route table \(ROUTES_FILE\) does not allow it"):
        settings.role_actions({**config, c.ROLES_FILE: str(roles_file)})
    roles_file.write_text("medical_security:\n  - {name: refer_clue, kind: clue_transfer, mode: refer,\n"
                          "     to: [public_security], copy_to: court}\n", encoding="utf-8")
    with pytest.raises(RolesError, match="sends copy_notice to court"):
        settings.role_actions({**config, c.ROLES_FILE: str(roles_file)})
