"""A node's RPC replies (services/nodes/entrypoints._Replies) are what nameko's own Responder
sends for the same request, on the real broker: the same body, correlation id and routing,
unpersisted; a result that cannot be encoded is answered with nameko's error, as before; a
connection found broken is made again once, and a broker out of reach is the caller's error."""

from __future__ import annotations

import json
import uuid
from functools import partial
from types import SimpleNamespace

import eventlet
import pytest
from eventlet.event import Event
from kombu import Connection, Queue
from kombu.exceptions import KombuError
from nameko.amqp.publish import Publisher
from nameko.constants import NON_PERSISTENT
from nameko.rpc import Responder, get_rpc_exchange
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_waiter

from adapters.transport.management import ManagementApi
from services.nodes.entrypoints import ResilientRpcConsumer, _Replies, control_rpc
from tests.integration.conftest import ADMIN_PASSWORD, ADMIN_USER, BROKER_ADDRESS, MANAGEMENT_URI

pytestmark = pytest.mark.integration


@pytest.fixture
def vhost_uri():
    api, vhost = ManagementApi(MANAGEMENT_URI), f"t-{uuid.uuid4().hex[:10]}"
    api.put(f"/vhosts/{vhost}", {})
    api.put(f"/permissions/{vhost}/{ADMIN_USER}", {"configure": ".*", "write": ".*", "read": ".*"})
    try:
        yield f"amqp://{ADMIN_USER}:{ADMIN_PASSWORD}@{BROKER_ADDRESS}/{vhost}"
    finally:
        api.delete(f"/vhosts/{vhost}")


def _replies_of(uri, send, request):
    """What ``send(config, request)`` returned, and the reply it published."""
    config, arrived = {"AMQP_URI": uri}, []
    with Connection(uri) as connection:
        queue = Queue(f"replies-{uuid.uuid4().hex[:6]}", exchange=get_rpc_exchange(config),
                      routing_key=request.properties["reply_to"], auto_delete=True)
        with connection.Consumer(queue, on_message=arrived.append, no_ack=True):
            outcome = send(config, request)
            connection.drain_events(timeout=10)
    assert len(arrived) == 1
    return outcome, arrived[0]


def _ours(result, config, request):
    return _Replies(config).send(request, result, None)


def _nameko(result, config, request):
    responder = Responder(config["AMQP_URI"], get_rpc_exchange(config), "json", request)
    responder.publisher_cls = partial(Publisher, use_confirms=False, delivery_mode=NON_PERSISTENT)
    return responder.send_response(result, None)


@pytest.mark.parametrize("result", [{"messages": [{"message_id": "m1"}], "n": 1}, None, "text"])
def test_a_reply_is_what_nameko_sends(vhost_uri, result):
    request = SimpleNamespace(properties={"content_type": "application/json", "reply_to": "caller.reply",
                                          "correlation_id": "c-1"})
    (ours, ours_message), (theirs, theirs_message) = (_replies_of(vhost_uri, partial(send, result), request)
                                                      for send in (_ours, _nameko))
    assert ours == theirs == (result, None)
    assert json.loads(ours_message.body) == json.loads(theirs_message.body) == {"result": result, "error": None}
    for key in ("correlation_id", "delivery_mode"):
        assert ours_message.properties.get(key) == theirs_message.properties.get(key)
    assert ours_message.properties["delivery_mode"] == NON_PERSISTENT
    assert ours_message.content_type == theirs_message.content_type == "application/json"


def test_a_result_that_cannot_be_encoded_is_answered_with_nameko_error(vhost_uri):
    request = SimpleNamespace(properties={"content_type": "application/json", "reply_to": "caller.reply",
                                          "correlation_id": "c-2"})
    unencodable = object()
    (ours, ours_message), (theirs, theirs_message) = (_replies_of(vhost_uri, partial(send, unencodable), request)
                                                      for send in (_ours, _nameko))
    assert ours[0] is theirs[0] is None
    assert ours[1][0] is theirs[1][0]  # the encoder's error, as the worker's outcome
    assert json.loads(ours_message.body) == json.loads(theirs_message.body)
    error = json.loads(ours_message.body)["error"]
    assert error["exc_type"] == "UnserializableValueError" and json.loads(ours_message.body)["result"] is None


def test_a_connection_found_broken_is_made_again_once(vhost_uri):
    request = SimpleNamespace(properties={"content_type": "application/json", "reply_to": "caller.reply",
                                          "correlation_id": "c-3"})
    replies = _Replies({"AMQP_URI": vhost_uri})
    try:
        _replies_of(vhost_uri, lambda config, request: replies.send(request, "first", None), request)
        broken = replies._connection
        broken.connection.sock.close()  # what a broker restart leaves behind
        outcome, message = _replies_of(vhost_uri, lambda config, request: replies.send(request, "second", None),
                                       request)
        assert outcome == ("second", None) and json.loads(message.body)["result"] == "second"
        assert replies._connection is not broken
    finally:
        replies.close()


def test_a_broker_that_cannot_be_reached_is_the_callers_error():
    replies = _Replies({"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/"})  # nothing listens there
    request = SimpleNamespace(properties={"content_type": "application/json", "reply_to": "caller.reply",
                                          "correlation_id": "c-4"})
    with pytest.raises((OSError, KombuError)):  # the consumer requeues the request then
        replies.send(request, "lost", None)


class _Slow:
    """A service whose call waits until the test lets it finish."""

    name = "slow_replies"
    started = release = None  # eventlet Events: the call began; the test lets it finish

    @control_rpc
    def finish(self, value):
        self.started.send()
        self.release.wait()
        return value


def test_a_call_finishing_while_the_node_stops_is_answered_and_nothing_stays_open(vhost_uri, container_factory):
    """nameko stops the entrypoints, waits for the running workers, then the consumer: the
    reply of a call still running at stop goes out, and the reply connection is closed after
    it (not made again by a late worker)."""
    _Slow.started, _Slow.release = Event(), Event()
    container = container_factory(_Slow, {"AMQP_URI": vhost_uri})
    container.start()
    [consumer] = [ext for ext in container.subextensions if isinstance(ext, ResilientRpcConsumer)]
    waiting_for_workers = Event()
    waitall = container._worker_pool.waitall

    def noted_waitall():  # nameko's stop, after the entrypoints stopped and before the consumer
        waiting_for_workers.send()
        return waitall()
    container._worker_pool.waitall = noted_waitall
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as proxy:
        with entrypoint_waiter(container, "finish"):
            reply = proxy[_Slow.name].finish.call_async("answered")
            _Slow.started.wait()
            stopping = eventlet.spawn(container.stop)
            with eventlet.Timeout(30):
                waiting_for_workers.wait()  # the stop has begun and waits for this call
            assert not stopping.dead
            _Slow.release.send()
        assert reply.result() == "answered"
        stopping.wait()
    assert consumer._replies._connection is None


def test_a_killed_node_leaves_no_reply_connection_open(vhost_uri, container_factory):
    _Slow.started, _Slow.release = Event(), Event()
    _Slow.release.send()
    container = container_factory(_Slow, {"AMQP_URI": vhost_uri})
    container.start()
    [consumer] = [ext for ext in container.subextensions if isinstance(ext, ResilientRpcConsumer)]
    with ClusterRpcProxy({"AMQP_URI": vhost_uri}, timeout=30) as proxy:
        assert proxy[_Slow.name].finish("once") == "once"
    assert consumer._replies._connection is not None
    container.kill()
    assert consumer._replies._connection is None
