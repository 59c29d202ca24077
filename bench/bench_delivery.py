"""End-to-end delivery between two agency nodes vs. raw Nameko events on the same broker.

cluebus: N clue transfers committed to medical_security's outbox, relayed, verified and
stored by public_security, receipted, and the receipts recorded back at medical_security.
Baseline: N Nameko events dispatched and handled between two services on the same broker.
Both run in this process on a fresh virtual-host-free namespace (unique exchange names).
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventlet.event import Event  # noqa: E402
from kombu import Connection  # noqa: E402
from nameko.events import EventDispatcher, event_handler  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from adapters.crypto.keys import initialise_key_directory  # noqa: E402
from services import config as c  # noqa: E402
from services import settings  # noqa: E402
from services.demo import story  # noqa: E402
from services.handlers import workflows  # noqa: E402
from services.nodes.factory import build_node_service, container_config  # noqa: E402
from services.runner import offline_context  # noqa: E402

DONE = Event()
COUNT = {"handled": 0, "wanted": 0}


class Emitter:
    name = "bench_emitter"
    dispatch = EventDispatcher()

    @rpc
    def emit(self, count):
        for index in range(count):
            self.dispatch("clue", {"index": index, "body": story.crime_clue(datetime.now(timezone.utc))})


class Listener:
    name = "bench_listener"

    @event_handler("bench_emitter", "clue")
    def on_clue(self, payload):
        COUNT["handled"] += 1
        if COUNT["handled"] == COUNT["wanted"]:
            DONE.send()


def baseline(amqp_uri: str, count: int) -> float:
    config = {"AMQP_URI": amqp_uri}
    runner = ServiceRunner(config)
    runner.add_service(Emitter)
    runner.add_service(Listener)
    runner.start()
    COUNT.update(handled=0, wanted=count)
    try:
        with ClusterRpcProxy(config) as proxy:
            start = time.perf_counter()
            proxy.bench_emitter.emit(count)
            DONE.wait()
            return time.perf_counter() - start
    finally:
        runner.stop()


def cluebus(config: dict, count: int) -> float:
    runner = ServiceRunner(container_config(config))
    for agency in ("medical_security", "public_security", "procuratorate"):
        runner.add_service(build_node_service(agency, config))
    runner.start()
    try:
        ctx = offline_context(config, "medical_security")
        now = datetime.now(timezone.utc)
        start = time.perf_counter()
        for _ in range(count):
            body = story.crime_clue(now)
            body["category"] = "administrative_violation"  # no copy to the procuratorate: one message each
            workflows.refer_clue(ctx, body, "public_security")
        with ctx.store.transaction() as repo:
            pass
        while True:
            with ctx.store.transaction() as repo:
                left = len(repo.outbox_entries(["pending", "published"]))
            if left == 0:
                return time.perf_counter() - start
            eventlet.sleep(0.01)
    finally:
        runner.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    base = c.load_config()
    data = Path(tempfile.mkdtemp(prefix="cluebus-bench-"))
    run = uuid.uuid4().hex[:8]
    config = {**base, c.DATA_DIR: str(data), c.KEYS_DIR: str(data / "keys"),
              c.DATABASE_URL: "sqlite:///{data_dir}/{agency}.sqlite3",
              c.TRANSPORT: {**base[c.TRANSPORT], c.EXCHANGE: f"bench-{run}", c.DEAD_LETTER_EXCHANGE: f"bench-{run}.dlx"},
              c.DELIVERY: {**base[c.DELIVERY], c.RELAY_INTERVAL_SECONDS: 0.05}}
    initialise_key_directory(config[c.KEYS_DIR], c.agency_codes(config), validity=timedelta(days=1))
    try:
        raw = baseline(config[c.AMQP_URI], args.messages)
        full = cluebus(config, args.messages)
    finally:
        with Connection(config[c.AMQP_URI]) as connection:
            settings.topology(config).delete(connection)
    print(f"{args.messages} messages")
    print(f"  raw Nameko events (baseline): {args.messages / raw:8.0f} msg/s")
    print(f"  cluebus signed transfer + stored + receipted + receipt recorded: {args.messages / full:8.0f} msg/s")
    print(f"  ratio cluebus/baseline time: {full / raw:.1f}x")


if __name__ == "__main__":
    main()
