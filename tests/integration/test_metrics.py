"""Metrics and probes on the real bus: after a referral, each node's /metrics shows what it
sent and received (the bureau's clue_transfer published and receipted, with its receipt's
latency; the police's clue_transfer accepted), its outbox by state, and the office its open
steps; /health and /ready answer 200, and /ready 503 once the node's bus account is refused."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.transport.management import ManagementApi, _q
from schemas import registry as k
from services import config as c
from tests.fixtures.bodies import sample_body

from .conftest import MANAGEMENT_URI

MEDICAL, POLICE, OFFICE = "medical_security", "public_security", "joint_office"


def _free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it (each agency node takes base + its place)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            sockets = []
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free ports")


@pytest.fixture
def bus_environ():
    return {"CLUEBUS_NODE_HTTP": f"127.0.0.1:{_free_ports(8)}"}


def _get(address: str, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=15) as response:
            return response.status, response.read().decode("utf-8"), response.headers.get("Content-Type")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8"), error.headers.get("Content-Type")


def _samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value}"""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_and_probes_after_a_referral(bus):
    medical = c.node_http_address(bus.config, MEDICAL)
    police = c.node_http_address(bus.config, POLICE)
    office = bus.config[c.OFFICE][c.HTTP_ADDRESS]
    assert medical != police

    bus.create(MEDICAL, POLICE, OFFICE)
    with bus.waiter(MEDICAL, kind=k.RECEIPT, status="receipt") as receipted, \
            bus.waiter(POLICE, kind=k.CLUE_TRANSFER, status="accepted"), \
            bus.waiter(OFFICE, kind=k.CLUE_TRANSFER):
        bus.start(MEDICAL, POLICE, OFFICE)
        with bus.rpc() as rpc:
            sent = rpc.medical_security.refer_clue(sample_body(k.CLUE_TRANSFER))
    transfer = next(m for m in sent["messages"] if m["kind"] == k.CLUE_TRANSFER)
    assert receipted.get()["status"] == "receipt"

    status, text, content_type = _get(medical, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    bureau = _samples(text)
    assert _value(bureau, "cluebus_messages_out_total", kind=k.CLUE_TRANSFER, outcome="published") >= 1
    assert _value(bureau, "cluebus_messages_in_total", kind=k.RECEIPT, outcome="receipt") >= 1
    assert _value(bureau, "cluebus_receipt_latency_seconds_count") >= 1
    assert _value(bureau, "cluebus_outbox_depth", state="receipted") >= 1  # the transfer, receipted
    assert ("cluebus_outbox_depth", (("state", "failed"),)) in bureau
    assert _value(bureau, "cluebus_quarantine_size") == 0
    assert _value(bureau, "cluebus_database_up") == 1
    assert ("cluebus_relay_lag_seconds", ()) in bureau
    # Labels are codes, never what a message says.
    assert transfer["message_id"] not in text and sent["referral_id"] not in text

    police_samples = _samples(_get(police, "/metrics")[1])
    assert _value(police_samples, "cluebus_messages_in_total", kind=k.CLUE_TRANSFER, outcome="accepted") == 1
    assert _value(police_samples, "cluebus_messages_out_total", kind=k.RECEIPT, outcome="published") >= 1
    assert _value(police_samples, "cluebus_outbox_depth", state="done") >= 1  # its receipt

    status, text, _ = _get(office, "/metrics")  # from loopback: no login needed
    assert status == 200
    office_samples = _samples(text)
    assert _value(office_samples, "cluebus_messages_in_total", kind=k.CLUE_TRANSFER, outcome="observed") >= 1
    assert _value(office_samples, "cluebus_office_steps_open", late_agency=POLICE) >= 1  # e.g. its filing decision
    assert "# TYPE cluebus_office_steps_overdue gauge" in text  # none yet: the limits are days away

    for address in (medical, police, office):
        assert _get(address, "/health")[0] == 200
        status, body, _ = _get(address, "/ready")
        assert status == 200, body
        assert json.loads(body)["status"] == "ready"

    # The bureau's bus account no longer opens (its password changed at the broker): not ready.
    user = bus.bus_user(MEDICAL)
    ManagementApi(MANAGEMENT_URI).put(f"/users/{_q(user)}", {"password": "changed by the test", "tags": ""})
    status, body, _ = _get(medical, "/ready")
    assert status == 503
    assert json.loads(body) == {"status": "not ready", "agency": MEDICAL, "reason": "bus not ready"}
    assert _get(medical, "/health")[0] == 200  # still live
    assert _get(police, "/ready")[0] == 200    # another agency's account is untouched
