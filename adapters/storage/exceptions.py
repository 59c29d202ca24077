"""Errors of the storage adapter."""


class StorageError(Exception):
    rule = "storage.error"


class AuditChainBroken(StorageError):
    rule = "audit.chain_broken"
