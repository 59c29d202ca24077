"""The row key: one request id per record, the same on every run of the same file.

The node stores the result of every request id it has done (services/handlers/requests.py):
sending a row again with its key returns the first result and sends nothing, so re-running an
import, or retrying a chunk whose answer was lost, never sends a record twice.
"""

from __future__ import annotations

import uuid

# Fixed for ever: changing it would give every record already sent a new key.
ROW_KEY_NAMESPACE = uuid.UUID("6f1d8a52-3c1b-5e57-9a4e-2f7c0d1b9e64")
ROW_KEY_PREFIX = "import:"


def row_key(agency: str, recipient: str, record_no: str) -> str:
    """``import:<uuid5>`` over the sending agency, the recipient and the record number."""
    return ROW_KEY_PREFIX + str(uuid.uuid5(ROW_KEY_NAMESPACE, "\x1f".join((agency, recipient, record_no))))
