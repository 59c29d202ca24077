"""The baseline of bench_delivery.py: raw Nameko events between two services, each in its own
process like the cluebus nodes, on the same broker.

    python bench/raw_events.py emitter AMQP_URI     # serves RPC bench_emitter.emit(count, body)
    python bench/raw_events.py listener AMQP_URI    # counts events; RPC bench_listener.count()
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import signal  # noqa: E402
import sys  # noqa: E402

from nameko.events import EventDispatcher, event_handler  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

HANDLED = {"count": 0}


class Emitter:
    name = "bench_emitter"
    dispatch = EventDispatcher()

    @rpc
    def emit(self, count, body):
        for index in range(count):
            self.dispatch("clue", {"index": index, "body": body})
        return count


class Listener:
    name = "bench_listener"

    @event_handler("bench_emitter", "clue")
    def on_clue(self, payload):
        HANDLED["count"] += 1

    @rpc
    def count(self):
        return HANDLED["count"]


def main(role: str, amqp_uri: str) -> None:
    runner = ServiceRunner({"AMQP_URI": amqp_uri})
    runner.add_service(Emitter if role == "emitter" else Listener)
    runner.start()
    print(f"{role} running", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: eventlet.spawn_n(runner.stop))
    signal.signal(signal.SIGINT, lambda *_: eventlet.spawn_n(runner.stop))
    runner.wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
