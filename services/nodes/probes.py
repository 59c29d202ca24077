"""The HTTP probes of a node, on nameko's ``http`` entrypoint: ``GET /metrics`` (Prometheus
text format), ``GET /health`` (200 while the container runs) and ``GET /ready`` (200 when the
node's database and the bus answer, else 503 with the reason). Agency nodes get them on their
own small port (``NODE.HTTP_ADDRESS``, services/nodes/factory.py); the joint office on its
dashboard's port (services/office/service.py). They show no personal data and change nothing.
"""

from __future__ import annotations

import json

from nameko.web.handlers import http
from werkzeug.wrappers import Response

from .metrics import CONTENT_TYPE, NodeMetrics

METRICS_PATH, HEALTH_PATH, READY_PATH = "/metrics", "/health", "/ready"
_NO_STORE = {"Cache-Control": "no-store"}


def _json(data: dict, status: int) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=_NO_STORE)


def metrics_response(metrics: NodeMetrics, now) -> Response:
    return Response(metrics.exposition(now), status=200, headers={"Content-Type": CONTENT_TYPE, **_NO_STORE})


def health_response(agency: str) -> Response:
    return _json({"status": "live", "agency": agency}, 200)


def ready_response(metrics: NodeMetrics) -> Response:
    reason = metrics.ready()
    if reason is not None:
        return _json({"status": "not ready", "agency": metrics.agency, "reason": reason}, 503)
    return _json({"status": "ready", "agency": metrics.agency}, 200)


def node_routes() -> dict:
    """The probes as entrypoints of an agency node's service class (attribute name -> method)."""
    def get_metrics(self, request):
        return metrics_response(self.metrics, self.clock())

    def get_health(self, request):
        return health_response(self.name)

    def get_ready(self, request):
        return ready_response(self.metrics)

    return {"http_metrics": http("GET", METRICS_PATH)(get_metrics),
            "http_health": http("GET", HEALTH_PATH)(get_health),
            "http_ready": http("GET", READY_PATH)(get_ready)}
