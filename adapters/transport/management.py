"""Applying a BrokerPlan through RabbitMQ's management HTTP API (the bus operator's account).

Idempotent: what exists is left as it is or brought in line (permissions, bindings); queues
whose arguments differ from the plan are reported, never silently replaced, since deleting a
queue would lose its messages.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from .credentials import AgencyCredentials
from .provisioning import EVERYTHING, BrokerPlan


class ManagementError(Exception):
    """The management API refused a request or cannot be reached."""


def _q(name: str) -> str:
    return quote(name, safe="")


@dataclass
class SetupReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)   # what the plan no longer names but that holds messages


class ManagementApi:
    def __init__(self, admin_uri: str, timeout: float = 30):
        split = urlsplit(admin_uri)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ManagementError(f"the admin URI must be the management API's http(s) address, e.g. "
                                  f"http://admin:secret@127.0.0.1:15672/ (got {self._safe(admin_uri)})")
        self.user = split.username or "guest"
        password = split.password or ""
        netloc = split.hostname + (f":{split.port}" if split.port else "")
        self.base = urlunsplit((split.scheme, netloc, split.path.rstrip("/") + "/api", "", ""))
        self._auth = "Basic " + base64.b64encode(f"{self.user}:{password}".encode()).decode()
        self.timeout = timeout

    @staticmethod
    def _safe(uri: str) -> str:
        split = urlsplit(uri)
        host = split.netloc.rsplit("@", 1)[-1]
        return urlunsplit(split._replace(netloc=f"{split.username}@{host}" if split.username else host))

    def request(self, method: str, path: str, body=None, *, allow=()) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Authorization": self._auth,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in allow:
                return None
            detail = exc.read().decode("utf-8", "replace")[:500]
            if exc.code == 401:
                raise ManagementError(f"the management API at {self.base} refused the admin credentials "
                                      f"of {self.user!r}") from None
            raise ManagementError(f"{method} {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ManagementError(f"cannot reach the management API at {self.base} ({exc}); start RabbitMQ "
                                  f"(`rabbitmq-server -detached`) with the management plugin "
                                  f"(`rabbitmq-plugins enable rabbitmq_management`)") from None
        return json.loads(text) if text else None

    def get(self, path: str, *, allow=()):
        return self.request("GET", path, allow=allow)

    def put(self, path: str, body: Mapping):
        return self.request("PUT", path, body)

    def delete(self, path: str, *, allow=(404,)):
        return self.request("DELETE", path, allow=allow)

    # -- the plan ----------------------------------------------------------------------------
    def apply(self, plan: BrokerPlan, credentials: Mapping[str, AgencyCredentials], *,
              keep_admin_access: bool = False) -> SetupReport:
        report = SetupReport()
        for vhost in plan.vhosts:
            if self.get(f"/vhosts/{_q(vhost)}", allow=(404,)) is None:
                self.put(f"/vhosts/{_q(vhost)}", {"description": "cluebus"})
                report.created.append(f"virtual host {vhost}")
            else:
                report.kept.append(f"virtual host {vhost}")
            # The operator needs rights to declare the topology; they are taken away at the end.
            self.put(f"/permissions/{_q(vhost)}/{_q(self.user)}",
                     {"configure": EVERYTHING, "write": EVERYTHING, "read": EVERYTHING})
        for account in plan.accounts:
            creds = credentials[account.agency]
            password = (creds.bus if account.plane == "bus" else creds.control).password
            existed = self.get(f"/users/{_q(account.user)}", allow=(404,)) is not None
            # Always set: the stored credential is the truth (re-running setup keeps it).
            self.put(f"/users/{_q(account.user)}", {"password": password, "tags": ""})
            (report.kept if existed else report.created).append(f"user {account.user}")
        for permission in plan.permissions:
            self.put(f"/permissions/{_q(permission.vhost)}/{_q(permission.user)}",
                     {"configure": permission.configure, "write": permission.write, "read": permission.read})
        for topic in plan.topic_permissions:
            self.put(f"/topic-permissions/{_q(topic.vhost)}/{_q(topic.user)}",
                     {"exchange": topic.exchange, "write": topic.write, "read": topic.read})
        self._revoke_stale_accounts(plan, report)
        for exchange in plan.exchanges:
            self.put(f"/exchanges/{_q(exchange.vhost)}/{_q(exchange.name)}",
                     {"type": exchange.type, "durable": True, "auto_delete": False, "internal": False,
                      "arguments": {}})
        for queue in plan.queues:
            self._ensure_queue(queue, report)
        self._report_stale_queues(plan, report)
        if not keep_admin_access:
            for vhost in plan.vhosts:
                self.delete(f"/permissions/{_q(vhost)}/{_q(self.user)}")
        return report

    def _revoke_stale_accounts(self, plan: BrokerPlan, report: SetupReport) -> None:
        """Nothing the configuration does not name keeps rights on the bus: an account of
        cluebus's naming for an agency taken out of AGENCIES is deleted with its control
        account; any other account (made by hand) loses its rights on the bus virtual host."""
        named = {p.user for p in plan.permissions if p.vhost == plan.bus_vhost} | {self.user}
        for permission in self.get(f"/vhosts/{_q(plan.bus_vhost)}/permissions") or []:
            user = permission["user"]
            if user in named:
                continue
            agency = plan.former_agency(user)
            if agency is None:
                self.delete(f"/permissions/{_q(plan.bus_vhost)}/{_q(user)}")
                self.delete(f"/topic-permissions/{_q(plan.bus_vhost)}/{_q(user)}")
                report.removed.append(f"{user}'s rights on {plan.bus_vhost} (an account the configuration does not name)")
                continue
            for stale in (user, plan.names.control_user(agency)):
                if self.get(f"/users/{_q(stale)}", allow=(404,)) is not None:
                    self.delete(f"/users/{_q(stale)}")
                    report.removed.append(f"user {stale} ({agency} is no longer in AGENCIES)")
            control_vhost = plan.names.control_vhost(agency)
            if control_vhost != plan.bus_vhost and self.get(f"/vhosts/{_q(control_vhost)}", allow=(404,)) is not None:
                report.left.append(f"virtual host {control_vhost} ({agency}'s control plane; nobody can log in "
                                   f"to it now: delete it when its data is no longer wanted)")

    def _report_stale_queues(self, plan: BrokerPlan, report: SetupReport) -> None:
        """Queues on the bus that the plan no longer names (a former agency's) are left as they
        are, since deleting one would lose its messages; the report says what they hold."""
        planned = {queue.name for queue in plan.queues if queue.vhost == plan.bus_vhost}
        for queue in self.get(f"/queues/{_q(plan.bus_vhost)}") or []:
            if queue["name"] not in planned and not queue.get("exclusive") and not queue["name"].startswith("amq."):
                held = queue.get("messages")
                report.left.append(f"queue {queue['name']} ({'?' if held is None else held} messages; no agency "
                                   f"in AGENCIES reads it: drain and delete it, see docs/operations.md)")

    def _ensure_queue(self, queue, report: SetupReport) -> None:
        path = f"/queues/{_q(queue.vhost)}/{_q(queue.name)}"
        existing = self.get(path, allow=(404,))
        if existing is None:
            self.put(path, {"durable": True, "auto_delete": False, "arguments": dict(queue.arguments)})
            report.created.append(f"queue {queue.name}")
        else:
            differing = {k: (existing.get("arguments", {}).get(k), v) for k, v in queue.arguments.items()
                         if existing.get("arguments", {}).get(k) != v}
            if differing:
                raise ManagementError(
                    f"queue {queue.name} exists with other arguments ({differing}); drain and delete it, "
                    f"then run setup again (see docs/operations.md)")
            report.kept.append(f"queue {queue.name}")
        wanted = set(queue.bindings)
        for exchange, key in wanted:
            self.request("POST", f"/bindings/{_q(queue.vhost)}/e/{_q(exchange)}/q/{_q(queue.name)}",
                         {"routing_key": key, "arguments": {}})
        for bound in self.get(f"/queues/{_q(queue.vhost)}/{_q(queue.name)}/bindings") or []:
            if bound.get("source") and (bound["source"], bound["routing_key"]) not in wanted:
                self.delete(f"/bindings/{_q(queue.vhost)}/e/{_q(bound['source'])}/q/{_q(queue.name)}/"
                            f"{_q(bound['properties_key'])}")
                report.removed.append(f"binding {bound['source']} {bound['routing_key']!r} → {queue.name}")

    def remove(self, plan: BrokerPlan) -> None:
        """Delete the plan's virtual hosts (with their queues and messages) and accounts."""
        for vhost in plan.vhosts:
            self.delete(f"/vhosts/{_q(vhost)}")
        for account in plan.accounts:
            self.delete(f"/users/{_q(account.user)}")

    def import_definitions(self, document: Mapping) -> None:
        self.request("POST", "/definitions", document)
