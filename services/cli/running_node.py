"""Whether an agency's node runs here and now, for the commands that need it running
(`cluebus import`, `cluebus reconcile`): its control plane answers and something consumes its
RPC queue. The queue outlives a stopped node, so a call would wait there unanswered: the
broker is asked who consumes it instead."""

from __future__ import annotations

from amqp.exceptions import NotFound
from kombu import Connection
from nameko.rpc import RPC_QUEUE_TEMPLATE

from adapters.transport.credentials import CredentialsError
from services import settings
from services.runner import BrokerUnreachable, check_control

from .errors import CommandError


def require_running_node(config, agency: str, *, why: str, then: str = "") -> None:
    """One line (CommandError) unless ``agency``'s node runs: ``why`` says what needs it,
    ``then`` what to do after starting it."""
    try:
        check_control(config, agency, timeout=5)
        listening = node_listening(config, agency)
    except (BrokerUnreachable, CredentialsError) as exc:
        raise CommandError(f"{exc}; nothing sent") from None
    if not listening:
        raise CommandError(f"the {agency} node is not running ({why}): start it with "
                           f"`cluebus run --agency {agency}`{then}; nothing sent")


def node_listening(config, agency: str) -> bool:
    """Whether the agency's node consumes its RPC queue now."""
    connection = Connection(settings.control_uri(config, agency), connect_timeout=5)
    try:
        channel = connection.channel()
        try:
            _, _, consumers = channel.queue_declare(queue=RPC_QUEUE_TEMPLATE.format(agency), passive=True)
        except NotFound:
            return False  # the node never ran on this control plane
        return consumers > 0
    finally:
        connection.release()
