"""Errors of the storage adapter."""


class StorageError(Exception):
    rule = "storage.error"


class AuditChainBroken(StorageError):
    rule = "audit.chain_broken"


class DuplicateRequest(StorageError):
    """Another transaction stored the same control request id first."""

    rule = "request.duplicate"
