"""Private RabbitMQ nodes for fault tests (tests/support/rabbit_node.py): a node of our own
survives SIGKILL with its durable quorum queue and persistent messages; a 3-node cluster keeps
a quorum queue's messages when its leader is killed; the shared node on 5672 is untouched."""

from __future__ import annotations

import re
import socket
import subprocess
import uuid

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.support.rabbit_node import RabbitCluster, RabbitNode, pid_alive

SHARED_NODE = "rabbit@localhost"
SHARED_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"
PERSISTENT = 2


def shared_node_os_pid() -> int:
    """The shared node's OS PID, read-only through ``rabbitmqctl status`` (the /usr/sbin
    wrapper runs it as the rabbitmq user, with that node's own cookie)."""
    status = subprocess.run(["rabbitmqctl", "-n", SHARED_NODE, "status"], capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    match = re.search(r"OS PID: (\d+)", status.stdout)
    assert match, status.stdout
    return int(match.group(1))


def assert_shared_node_answers() -> None:
    with Connection(SHARED_AMQP_URI, connect_timeout=10) as connection:
        connection.connect()
        assert connection.connected


def quorum_queue(name: str, **arguments) -> Queue:
    return Queue(name, Exchange(""), routing_key=name, durable=True, auto_delete=False,
                 queue_arguments={"x-queue-type": "quorum", **arguments})


def publish_confirmed(uri: str, queue: Queue, bodies: list[str]) -> None:
    """Declare ``queue`` and publish persistent messages to it, each confirmed by the broker
    (py-amqp's confirm_publish: every publish waits for its basic.ack)."""
    with Connection(uri, connect_timeout=10, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        queue(channel).declare()
        producer = Producer(channel)
        for body in bodies:
            producer.publish(body, exchange="", routing_key=queue.name, delivery_mode=PERSISTENT,
                             serializer="json", mandatory=True, retry=False)
        channel.close()


def consume(connection: Connection, queue: Queue, count: int, timeout: float = 30) -> list:
    """Up to ``count`` messages from ``queue`` (acknowledged), waiting on the broker's
    deliveries (no polling)."""
    received = []

    def on_message(body, message):
        received.append((body, message.delivery_info, message.properties))
        message.ack()

    with Consumer(connection, queues=[queue], callbacks=[on_message], auto_declare=False, prefetch_count=count):
        while len(received) < count:
            connection.drain_events(timeout=timeout)
    return received


def message_count(connection: Connection, queue_name: str) -> int:
    channel = connection.channel()
    try:
        return channel.queue_declare(queue_name, passive=True).message_count
    finally:
        channel.close()


def connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_private_node_keeps_persistent_messages_across_kill_9(tmp_path):
    shared_pid = shared_node_os_pid()
    queue = quorum_queue(f"fault-{uuid.uuid4().hex[:8]}")
    bodies = [{"n": index} for index in range(3)]

    with RabbitNode(tmp_path / "rabbit") as node:
        assert node.name.startswith("cluebus-") and node.name.endswith("@localhost")
        assert node.amqp_port != 5672
        assert node.api("GET", "overview")["node"] == node.name  # management answers, as guest
        publish_confirmed(node.amqp_uri(), queue, bodies)
        info = node.queue_info(queue.name)
        assert info["type"] == "quorum" and info["durable"] is True
        # Ra saves its registry of queue servers only 500 ms after a change: flush it, or a
        # kill this soon after the declaration loses the queue's Ra server (see the helper).
        node.sync_metadata()

        pid = node.pid
        assert pid and pid_alive(pid) and pid != shared_pid
        node.kill()
        assert not pid_alive(pid)
        assert node.pid is None
        assert connection_refused(node.amqp_port)
        assert_shared_node_answers()  # SIGKILL of our node left the shared one alone

        node.restart()
        assert node.pid not in (None, pid)
        with Connection(node.amqp_uri(), connect_timeout=10) as connection:
            assert message_count(connection, queue.name) == 3
            received = consume(connection, queue, 3)
        assert [body for body, _, _ in received] == bodies
        assert all(properties["delivery_mode"] == PERSISTENT for _, _, properties in received)
    assert node.pid is None and not pid_alive(pid)
    node.stop()  # idempotent

    assert shared_node_os_pid() == shared_pid
    assert_shared_node_answers()


def test_cluster_quorum_queue_survives_its_leader_being_killed(tmp_path):
    queue = quorum_queue(f"fault-{uuid.uuid4().hex[:8]}", **{"x-quorum-initial-group-size": 3})

    with RabbitCluster(tmp_path / "cluster", size=3) as cluster:
        names = {node.name for node in cluster.nodes}
        assert len(names) == 3 and len({node.amqp_port for node in cluster.nodes}) == 3
        assert cluster.cluster_status() == {name: True for name in names}

        publish_confirmed(cluster.nodes[0].amqp_uri(), queue, [{"before": "kill"}])
        info = cluster.queue_info(queue.name)
        assert info["type"] == "quorum"
        assert sorted(info["members"]) == sorted(names)
        leader = cluster.leader(queue.name)
        cluster.sync_metadata()

        pid = leader.pid
        cluster.kill(leader)
        assert not pid_alive(pid) and connection_refused(leader.amqp_port)
        new_leader = cluster.wait_for_leader(queue.name, exclude=[leader])
        assert new_leader is not leader

        other = next(node for node in cluster.nodes if node is not leader)
        with Connection(other.amqp_uri(), connect_timeout=10) as connection:
            assert consume(connection, queue, 1)[0][0] == {"before": "kill"}

        # The failover list reaches a live member even when the dead leader comes first.
        uris = cluster.amqp_uris()
        assert uris.split(";")[0] == cluster.nodes[0].amqp_uri()
        with Connection(";".join([leader.amqp_uri()] + [node.amqp_uri() for node in cluster.nodes
                                                        if node is not leader]),
                        connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=3, interval_start=0, interval_step=0)
            assert message_count(connection, queue.name) == 0

        # The killed member comes back into the cluster, with its quorum queue member.
        cluster.restart(leader)
        assert cluster.cluster_status() == {name: True for name in names}
        assert sorted(cluster.wait_for_online(queue.name)["online"]) == sorted(names)
    assert all(node.pid is None for node in cluster.nodes)
    assert_shared_node_answers()


@pytest.fixture(autouse=True)
def _no_stray_beam(tmp_path):
    """After each test no process of this test's nodes is left (they all run with a HOME
    under tmp_path, which appears on their command lines)."""
    yield
    leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in leftovers
