"""Errors of the storage adapter. Each names the rule it enforces in ``rule``."""

from services.protocol import rules


class AuditChainBroken(Exception):
    rule = rules.AUDIT_CHAIN_BROKEN


class DuplicateRequest(Exception):
    """Another transaction stored the same control request id first."""

    rule = rules.REQUEST_DUPLICATE
