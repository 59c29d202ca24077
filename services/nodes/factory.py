"""Builds one Nameko service class per agency from the role table and the configuration."""

from __future__ import annotations

from typing import Mapping

from nameko.constants import MAX_WORKERS_CONFIG_KEY
from nameko.timer import timer

from services import config as c
from services import settings
from services.handlers import workflows
from services.roles import FOLLOW_UP, REFER, REPLY, START, Action, RolesError

from .base import CALLER_ERRORS, AgencyNode
from .dependencies import Clock
from .entrypoints import (BATCH_SIZE_KEY, BUS_CONNECTION_KEY, BUS_USER_KEY, BUS_USERS_KEY, consume_envelopes,
                          control_rpc)
from .probes import node_routes



def _role_method(action: Action):
    if action.mode == REFER:
        def method(self, body, recipient=None, seal=None, request_id=None):
            recipient = recipient or action.recipients[0]
            return self._run(workflows.refer_clue_call(body, recipient, seal=self._seal(seal), copy_to=action.copy_to,
                                                       request=self._request(action.name, request_id)))
    elif action.mode == START:
        def method(self, body, recipient=None, seal=None, request_id=None):
            recipient = recipient or action.recipients[0]
            return self._run(workflows.start_call(action.kind, recipient, body, seal=self._seal(seal),
                                                  request=self._request(action.name, request_id)))
    elif action.mode == REPLY:
        def method(self, message_id, body, seal=None, request_id=None):
            return self._run(workflows.reply_call(self.context(), message_id, action.kind, body,
                                                  seal=self._seal(seal),
                                                  request=self._request(action.name, request_id)))
    elif action.mode == FOLLOW_UP:
        def method(self, referral_id, body, recipients=None, in_reply_to=None, seal=None, request_id=None):
            return self._run(workflows.follow_up_call(self.context(), referral_id, action.kind, body,
                                                      recipients or action.default_recipients(body),
                                                      in_reply_to=in_reply_to, seal=self._seal(seal),
                                                      request=self._request(action.name, request_id)))
    else:  # pragma: no cover - the table is checked by tests
        raise ValueError(f"unknown action mode {action.mode!r}")
    method.__name__ = action.name
    method.__doc__ = f"{action.doc} Sends {action.kind} ({action.mode})."
    return control_rpc(expected_exceptions=CALLER_ERRORS)(method)


def _many_method(action: Action):
    """``refer_clues(clues)``: many clue transfers in one transaction; each clue is
    ``{"body": ..., "recipient": optional, "request_id": optional}`` and gets its own answer
    (``refused`` with its rule when its body or route is refused; the others go through)."""
    def method(self, clues, seal=None):
        items = [workflows.ClueItem(clue["body"], clue.get("recipient") or action.recipients[0],
                                    self._request(action.name, clue.get("request_id")) if clue.get("request_id")
                                    else None) for clue in clues]
        return self._run_many(workflows.clue_calls(items, seal=self._seal(seal), copy_to=action.copy_to))
    method.__name__ = f"{action.name}s"
    method.__doc__ = _many_method.__doc__
    return control_rpc(expected_exceptions=CALLER_ERRORS)(method)


def build_node_service(agency: str, config: Mapping, *, clock=None) -> type:
    """A Nameko service class named ``agency``: shared behaviour plus its role's methods."""
    if agency not in c.agency_codes(config):
        raise ValueError(f"{agency} is not a configured agency")
    topology = settings.topology(config)
    interval = float(config[c.DELIVERY][c.RELAY_INTERVAL_SECONDS])

    def on_envelope(self, deliveries):
        return self.handle_envelopes(deliveries)

    def relay_outbox(self):
        self.flush_outbox()

    def reconcile_peers(self):
        self.reconcile_periodically()

    attributes = {
        "name": agency,
        "__doc__": f"The {agency} node.",
        "on_envelope": consume_envelopes(topology.queue(agency))(on_envelope),
        "relay_outbox": timer(interval=interval)(relay_outbox),
    }
    reconcile_interval = c.reconcile_seconds(config, c.INTERVAL_SECONDS)
    if reconcile_interval > 0:  # 0: reconciliation only on demand
        attributes["reconcile_peers"] = timer(interval=reconcile_interval)(reconcile_peers)
    if clock is not None:
        attributes["clock"] = Clock(clock)
    if c.node_http_address(config, agency):  # /metrics, /health, /ready on the node's own port
        attributes.update(node_routes())
    for action in settings.role_actions(config).get(agency, ()):
        methods = {action.name: _role_method(action)}
        if action.mode == REFER:
            methods[f"{action.name}s"] = _many_method(action)
        for name, method in methods.items():
            if name in attributes or hasattr(AgencyNode, name):
                raise RolesError(f"{agency}.{name} (ROLES_FILE) would replace the node's own {name}: choose another name")
            attributes[name] = method
    class_name = "".join(part.title() for part in agency.split("_")) + "Node"
    return type(class_name, (AgencyNode,), attributes)


def container_config(config: Mapping, agency: str, credentials=None) -> dict:
    """What ``agency``'s Nameko container runs with: our configuration, its control plane as
    Nameko's AMQP_URI (RPC, timers), its bus connection for envelopes, the bus user names of
    every agency (to tell who published a delivery), and its HTTP address (the office's
    dashboard; an agency node's probes, NODE.HTTP_ADDRESS, when it has them).

    The URIs hold the agency's broker passwords: this dict is never logged or printed."""
    names = settings.broker_names(config)
    credentials = credentials or settings.credential_store(config).load(agency)
    return {**config,
            "AMQP_URI": settings.control_uri(config, agency, credentials),
            BUS_CONNECTION_KEY: settings.bus_uri(config, agency, credentials),
            BUS_USER_KEY: credentials.bus.user,
            BUS_USERS_KEY: {names.bus_user(a): a for a in c.agency_codes(config)},
            BATCH_SIZE_KEY: int(config[c.DELIVERY].get(c.BATCH_SIZE, 200)),
            MAX_WORKERS_CONFIG_KEY: int(config[c.DELIVERY].get(c.WORKERS, 50)),
            "WEB_SERVER_ADDRESS": ((agency not in c.observer_codes(config) and c.node_http_address(config, agency))
                                   or config.get(c.OFFICE, {}).get(c.HTTP_ADDRESS, "127.0.0.1:8000"))}
