"""Calling agencies' control planes (their nodes' RPCs), each with that agency's own control
account on its own virtual host: what a clerk's system, the demo and the tests use."""

from __future__ import annotations

from typing import Iterable, Mapping

from nameko.standalone.rpc import ClusterRpcProxy

from . import settings


class ControlClients:
    """``clients["medical_security"].refer_clue(...)`` or ``clients.medical_security...``: one
    RPC proxy per agency, opened on first use with that agency's control credentials."""

    def __init__(self, config: Mapping, agencies: Iterable[str] | None = None, *, timeout: float = 60):
        self.config = config
        self.agencies = set(agencies) if agencies is not None else None
        self.timeout = timeout
        self._proxies: dict[str, ClusterRpcProxy] = {}
        self._services: dict[str, object] = {}

    def __getitem__(self, agency: str):
        if agency not in self._services:
            if self.agencies is not None and agency not in self.agencies:
                raise KeyError(f"no control credentials for {agency} here")
            proxy = ClusterRpcProxy({"AMQP_URI": settings.control_uri(self.config, agency)}, timeout=self.timeout)
            self._services[agency] = proxy.start()[agency]
            self._proxies[agency] = proxy
        return self._services[agency]

    def __getattr__(self, agency: str):
        if agency.startswith("_"):
            raise AttributeError(agency)
        return self[agency]

    def close(self) -> None:
        for proxy in self._proxies.values():
            proxy.stop()
        self._proxies.clear()
        self._services.clear()

    def __enter__(self) -> "ControlClients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
