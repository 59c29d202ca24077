"""The joint-meeting office as a Nameko service: it only translates entrypoints (its queue of
all traffic, a timer, RPC and HTTP) into calls of services/office/handlers.py."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import wraps
from typing import Mapping

import eventlet
from nameko.constants import WEB_SERVER_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from adapters.crypto.timestamps import format_timestamp, parse_timestamp
from services import config as c
from services import bootstrap
from services import settings
from services.handlers import keyring_updates
from services.nodes.base import REQUEUE_PAUSE_SECONDS, AgencyNode
from services.nodes.dependencies import Clock, NodeDatabase, NodeProtocol, NodeTransport
from services.nodes.entrypoints import consume_envelopes, control_rpc
from services.nodes.metrics import Metrics
from services.nodes.probes import (HEALTH_PATH, METRICS_PATH, READY_PATH, health_response, metrics_response,
                                   ready_response)

from . import dashboard, handlers
from .login import LoginApi, login_api

log = logging.getLogger(__name__)

OFFICE_NAME = "联席会议办公室 Joint-Meeting Office"


class OfficeRules(DependencyProvider):
    """Deadline rules and the holiday calendar, from the configuration."""

    def setup(self):
        self.api = bootstrap.office_rules(self.container.config)

    def get_dependency(self, worker_ctx) -> bootstrap.OfficeRules:
        return self.api


class OfficeLogin(DependencyProvider):
    """The staff accounts (``OFFICE.ACCOUNTS_FILE``) and the sessions of the HTTP gateway, one
    set per office. Refuses to start the office when the file is refused, or when the gateway
    would listen beyond loopback with no account."""

    def setup(self):
        config = self.container.config
        # Nameko's WebServer binds to WEB_SERVER_ADDRESS, with this default.
        self.api = login_api(config, config.get(WEB_SERVER_CONFIG_KEY, "0.0.0.0:8000"))

    def get_dependency(self, worker_ctx) -> LoginApi:
        return self.api


def _logged_in(route):
    """Answers a request without a valid session with ``LoginApi.refusal`` (401 JSON for the
    API, a redirect to the login page for the dashboard) instead of calling the route."""
    @wraps(route)
    def guarded(self, request, *args, **kwargs):
        return self.login.refusal(request) or route(self, request, *args, **kwargs)
    return guarded


# Callers that may read /metrics without a login: the office's own machine.
_LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})

# Pages and data that need a login are never to be kept by a browser or a proxy.
_PRIVATE = {"Cache-Control": "no-store"}


def _json(data, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, indent=1), status=status,
                    mimetype="application/json", headers=_PRIVATE)


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status=status, mimetype="text/html", headers=_PRIVATE)


class JointOfficeBase:
    # ``name`` (the service's, and the office's agency code) is set by build_office_service.

    store = NodeDatabase()  # the node's tables (urges use the same outbox) and the office's
    protocol = NodeProtocol()
    transport = NodeTransport()
    clock = Clock()
    rules = OfficeRules()
    login = OfficeLogin()
    metrics = Metrics()

    # The outbox relay is the agency node's, unchanged: urges are ordinary signed messages.
    flush_outbox = AgencyNode.flush_outbox

    def context(self) -> handlers.OfficeContext:
        node = bootstrap.node_context(self.protocol, self.store, self.clock)
        return bootstrap.office_context_for(node, self.rules, self.agencies)

    def handle_traffic(self, deliveries) -> list[dict | None]:
        """One result per delivery; None for one that could not be stored (requeued)."""
        ctx = self.context()
        results = []
        for delivery in deliveries:
            try:
                if keyring_updates.is_keyring_update(delivery):
                    results.append(keyring_updates.take_keyring_updates(ctx.node, [delivery])[0].__dict__)
                    continue
                results.append(handlers.observe(ctx, delivery))
            except Exception:
                log.exception("office: could not record an observed message; it will be redelivered")
                results.append(None)
        self.metrics.batch_received(results)
        if None in results:
            eventlet.sleep(REQUEUE_PAUSE_SECONDS)
        if any(r and r.get("receipt") for r in results):
            self.flush_outbox(ctx.node)
        return results

    def act(self) -> list[dict]:
        ctx = self.context()
        done = handlers.act_on_due_steps(ctx)
        if any(action.get("message_id") for action in done):
            self.flush_outbox(ctx.node)
        return done

    def _as_of(self, text: str | None) -> datetime:
        return parse_timestamp(text) if text else self.clock()

    def _period(self, start: str | None, end: str | None, as_of: datetime) -> tuple[datetime, datetime]:
        period_to = parse_timestamp(end) if end else as_of
        period_from = parse_timestamp(start) if start else period_to - timedelta(days=30)
        if period_from >= period_to:
            raise ValueError("the period must start before it ends")
        return period_from, period_to

    # -- RPC ------------------------------------------------------------------------------------
    @control_rpc
    def overdue(self, as_of=None):
        return handlers.overdue(self.context(), self._as_of(as_of))

    @control_rpc(expected_exceptions=ValueError)
    def stats(self, period_from=None, period_to=None, as_of=None):
        moment = self._as_of(as_of)
        start, end = self._period(period_from, period_to, moment)
        return handlers.statistics(self.context(), start, end, moment).to_json()

    @control_rpc(expected_exceptions=ValueError)
    def referrals(self, query=None, as_of=None):
        return handlers.referrals(self.context(), self._as_of(as_of), query)

    @control_rpc(expected_exceptions=ValueError)
    def timeline(self, referral_id, as_of=None):
        return handlers.timeline(self.context(), referral_id, self._as_of(as_of))

    @control_rpc
    def scan_now(self):
        return self.act()

    # -- HTTP: logging in, a JSON API and the dashboard (all but /login and /logout need a session)
    @http("GET", "/login")
    def page_login(self, request):
        return self.login.form(request)

    @http("POST", "/login")
    def post_login(self, request):
        return self.login.log_in(request)

    @http("POST", "/logout")
    def post_logout(self, request):
        return self.login.log_out(request)

    # -- HTTP probes: /health and /ready for anyone (they say nothing but "up"); /metrics (counts,
    # no personal data) to a caller on the office's own machine (a local Prometheus) or logged in.
    @http("GET", HEALTH_PATH)
    def probe_health(self, request):
        return health_response(self.name)

    @http("GET", READY_PATH)
    def probe_ready(self, request):
        return ready_response(self.metrics)

    @http("GET", METRICS_PATH)
    def probe_metrics(self, request):
        if request.remote_addr not in _LOOPBACK:
            refused = self.login.refusal(request)
            if refused is not None:
                return refused
        return metrics_response(self.metrics, self.clock())

    @http("GET", "/api/overdue")
    @_logged_in
    def api_overdue(self, request):
        try:
            return _json(handlers.overdue(self.context(), self._as_of(request.args.get("as_of"))))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)

    @http("GET", "/api/stats")
    @_logged_in
    def api_stats(self, request):
        try:
            moment = self._as_of(request.args.get("as_of"))
            start, end = self._period(request.args.get("from"), request.args.get("to"), moment)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(handlers.statistics(self.context(), start, end, moment).to_json())

    @http("GET", "/api/referrals")
    @_logged_in
    def api_referrals(self, request):
        try:
            moment = self._as_of(request.args.get("as_of"))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(handlers.referrals(self.context(), moment, request.args.get("q")))

    @http("GET", "/api/referrals/<string:referral_id>")
    @_logged_in
    def api_timeline(self, request, referral_id):
        try:
            moment = self._as_of(request.args.get("as_of"))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        found = handlers.timeline(self.context(), referral_id, moment)
        return _json(found) if found else _json({"error": f"no referral {referral_id}"}, 404)

    @http("GET", "/dashboard")
    @_logged_in
    def page_dashboard(self, request):
        """The dashboard at ``?as_of=T`` (default now), statistics of ``?from=&to=`` (default the
        30 days before as_of): the same snapshot as ``/api/overdue`` and ``/api/stats`` at T."""
        try:
            moment = self._as_of(request.args.get("as_of"))
            start, end = self._period(request.args.get("from"), request.args.get("to"), moment)
            if moment < start:
                raise ValueError("as_of must not precede from")
        except ValueError as exc:
            return _html(dashboard.render_error(str(exc)), 400)
        shown = format_timestamp(moment.replace(microsecond=0))
        return _html(dashboard.render_dashboard(
            office_name=OFFICE_NAME, as_of=shown, agency_names=self.agency_names,
            link_as_of=shown if request.args.get("as_of") else None,
            **handlers.dashboard(self.context(), start, end, moment)))

    @http("GET", "/dashboard/referrals/<string:referral_id>")
    @_logged_in
    def page_referral(self, request, referral_id):
        try:
            moment = self._as_of(request.args.get("as_of"))
        except ValueError as exc:
            return _html(dashboard.render_error(str(exc)), 400)
        found = handlers.timeline(self.context(), referral_id, moment)
        if not found:
            return _html(dashboard.render_not_found(f"no referral {referral_id}"), 404)
        shown = format_timestamp(moment.replace(microsecond=0))
        return _html(dashboard.render_referral(as_of=shown, timeline=found, agency_names=self.agency_names,
                                               link_as_of=shown if request.args.get("as_of") else None))


def build_office_service(config: Mapping, *, clock=None) -> type:
    agency = c.office_code(config)
    topology = settings.topology(config)
    office = config[c.OFFICE]

    def on_traffic(self, deliveries):
        return self.handle_traffic(deliveries)

    def scan(self):
        self.act()

    def relay_outbox(self):
        self.flush_outbox(self.context().node)

    attributes = {
        "name": agency,
        "agencies": tuple(a for a in c.agency_codes(config) if a not in c.observer_codes(config)),
        # The dashboard names agencies as the configuration does (AGENCIES: name_zh).
        "agency_names": c.agency_names(config),
        "on_envelope": consume_envelopes(topology.queue(agency))(on_traffic),
        "scan": timer(interval=float(office[c.SCAN_INTERVAL_SECONDS]))(scan),
        # Urges are ordinary outbox messages: published, resent without a receipt, like any node's.
        "relay_outbox": timer(interval=float(config[c.DELIVERY][c.RELAY_INTERVAL_SECONDS]))(relay_outbox),
    }
    if clock is not None:
        attributes["clock"] = Clock(clock)
    return type("JointOfficeNode", (JointOfficeBase,), attributes)
