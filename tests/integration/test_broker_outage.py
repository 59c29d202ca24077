"""A node survives broker outages (on a private RabbitMQ node of the test's own, killed with
kill -9 by its PID and started again): an RPC in flight when the broker dies leaves the node
running, is redelivered after the restart and answered from its stored result, and a node run
as `cluebus run` keeps serving after the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter

from adapters.crypto.keys import initialise_key_directory
from adapters.storage.tables import Referral
from schemas import registry as k
from services import config as c
from services import provisioning, settings
from services.nodes import base
from services.nodes.factory import build_node_service, container_config
from tests.fixtures.bodies import sample_body
from tests.integration import helpers as h
from tests.support.rabbit_node import RabbitNode

MEDICAL = "medical_security"


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory):
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def outage_config(private_broker, tmp_path):
    run_id = uuid.uuid4().hex[:8]
    address = f"127.0.0.1:{private_broker.amqp_port}"
    environ = {
        "CLUEBUS_BUS_URI": f"amqp://{address}/bus-{run_id}",
        "CLUEBUS_CONTROL_URI": f"amqp://{address}/bus-{run_id}.{{agency}}.control",
        "CLUEBUS_BROKER_USER_PREFIX": f"o-{run_id}.",
        "CLUEBUS_CREDENTIALS_DIR": str(tmp_path / "credentials"),
        "CLUEBUS_BROKER_ADMIN_URI": private_broker.management_uri(),
        "CLUEBUS_DATA_DIR": str(tmp_path / "data"),
        "CLUEBUS_KEYS_DIR": str(tmp_path / "keys"),
        "CLUEBUS_RELAY_INTERVAL_SECONDS": "0.2",
        "CLUEBUS_OFFICE_ACCOUNTS_FILE": str(tmp_path / "office-accounts.yaml"),
    }
    config = c.load_config(environ=environ)
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=30))
    provisioning.setup(config)
    private_broker.sync_metadata()  # the quorum queues survive a kill right after
    yield config, environ
    if private_broker.running:
        provisioning.remove(config)


def _referrals(config) -> int:
    from adapters.storage.store import Store
    store = Store(c.database_url(config, MEDICAL))
    try:
        with store.transaction() as repo:
            return h.count(repo, Referral)
    finally:
        store.dispose()


def test_an_rpc_in_flight_when_the_broker_dies_is_answered_once_after_it_is_back(
        private_broker, outage_config, container_factory, monkeypatch):
    config, _ = outage_config
    container = container_factory(build_node_service(MEDICAL, config), container_config(config, MEDICAL))
    container.start()

    # Hold the first refer_clue after its commit, before its reply: the broker dies then.
    committed, release = eventlet.event.Event(), eventlet.event.Event()
    original = base.AgencyNode._run

    def held(self, call):
        answer = original(self, call)
        if not committed.ready():
            committed.send()
            release.wait()
        return answer
    monkeypatch.setattr(base.AgencyNode, "_run", held)

    control = {"AMQP_URI": settings.control_uri(config, MEDICAL)}
    caller = eventlet.spawn(lambda: ClusterRpcProxy(control, timeout=120).start()[MEDICAL].refer_clue(
        sample_body(k.CLUE_TRANSFER)))
    committed.wait()
    private_broker.kill()
    release.send()  # the reply cannot be published: the worker must not take the container down

    def redelivered(worker_ctx, result, exc_info):
        return exc_info is None and result.get("repeated") is True
    with entrypoint_waiter(container, "refer_clue", callback=redelivered, timeout=90):
        private_broker.restart()
    caller.kill()
    assert not container._died.ready(), "the node died with the broker"
    assert _referrals(config) == 1  # the redelivered request did not open a second referral

    # And the node goes on serving.
    with ClusterRpcProxy(control, timeout=60) as rpc:
        again = rpc[MEDICAL].refer_clue(sample_body(k.CLUE_TRANSFER))
    assert again["repeated"] is False
    assert _referrals(config) == 2


def test_a_node_run_from_the_command_line_keeps_running_across_a_broker_restart(private_broker, outage_config):
    config, environ = outage_config
    env = {**os.environ, **environ}
    cluebus = str(Path(sys.executable).with_name("cluebus"))
    node = subprocess.Popen([cluebus, "run", "--agency", MEDICAL], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in node.stdout:
            if f"{MEDICAL} node running" in line:
                break
        assert node.poll() is None
        private_broker.kill()
        private_broker.restart()
        control = {"AMQP_URI": settings.control_uri(config, MEDICAL)}
        with ClusterRpcProxy(control, timeout=60) as rpc:  # answered once the node has reconnected
            sent = rpc[MEDICAL].refer_clue(sample_body(k.CLUE_TRANSFER))
        assert sent["referral_id"] and node.poll() is None, "the node exited with the broker"
        node.send_signal(signal.SIGINT)
        rest, _ = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, rest
