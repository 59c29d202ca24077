"""Flat with history, measured with the machine's drift taken out: the handlers' CPU per round
trip with N referrals stored against 1,000, single round trips alternating between the two.

bench_delivery.py --history runs each size in its own minutes, and on these machines the speed
of the same work changes by up to 2x from one minute to the next (platform_probe.py). Here both
sizes run in one process, each on its own databases (the node's wiring with SQLite on disk, no
broker: tests/support/inprocess_bus.py), one round trip at a time in turn, so that the drift
falls on both alike. It measures the handlers (compose, sign, store, verify, receipt, commit)
and not nameko, kombu or the broker, which do not touch the tables.

    .venv/bin/python bench/history_interleaved.py [--history 100000] [--rounds 2000] [--json]

Prints thread CPU per round trip at the bureau (the call's transaction and the receipt's) and
at the police (the received transfer's), for each size, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import populate  # noqa: E402
from services.demo import story  # noqa: E402
from tests.fixtures.keys import FIXED_NOW, FakeClock  # noqa: E402
from tests.support.inprocess_bus import InProcessBus, make_config  # noqa: E402

SENDER, RECEIVER, OFFICE = "medical_security", "public_security", "joint_office"
SMALL = 1000
WARM_UP = 100


def _bus(directory: Path, referrals: int) -> InProcessBus:
    config, _ = make_config(directory)
    populate(config, SENDER, RECEIVER, referrals)
    return InProcessBus(config, FakeClock())


def _body(index: int) -> dict:
    body = story.crime_clue(FIXED_NOW, f"YB-H{index:07d}")
    body["category"] = "administrative_violation"  # no copy to the procuratorate: one message each
    return body


def _round_trip(bus: InProcessBus, index: int) -> tuple[float, float]:
    """One clue sent, received and receipted: (the bureau's, the police's) thread CPU seconds."""
    started = time.thread_time()
    bus.refer_clue(SENDER, _body(index), RECEIVER)
    sent = time.thread_time()
    bus.deliver(RECEIVER)
    received = time.thread_time()
    bus.deliver(SENDER)
    receipted = time.thread_time()
    bus.take(OFFICE)  # the office's copies: nobody observes them here
    return (sent - started) + (receipted - received), received - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000, help="referrals stored in the larger databases")
    parser.add_argument("--rounds", type=int, default=2000, help="round trips on each")
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cluebus-history-"))
    buses: dict[int, InProcessBus] = {}
    try:
        for size in (SMALL, args.history):
            buses[size] = _bus(base / str(size), size)
            for index in range(WARM_UP):
                _round_trip(buses[size], index)
        spent = {size: [0.0, 0.0] for size in buses}
        order = list(buses)
        for round_ in range(args.rounds):
            for size in (order if round_ % 2 == 0 else order[::-1]):
                bureau, police = _round_trip(buses[size], WARM_UP + round_)
                spent[size][0] += bureau
                spent[size][1] += police
    finally:
        for bus in buses.values():
            bus.close()
        shutil.rmtree(base, ignore_errors=True)
    per = {size: [round(seconds * 1000 / args.rounds, 3) for seconds in spent[size]] for size in spent}
    result = {"history": args.history, "rounds": args.rounds,
              "cpu_ms_per_round_trip": {str(size): {"medical_security": per[size][0], "public_security": per[size][1]}
                                        for size in per},
              "ratio": {"medical_security": round(per[args.history][0] / per[SMALL][0], 3),
                        "public_security": round(per[args.history][1] / per[SMALL][1], 3)}}
    if args.json:
        print(json.dumps(result))
        return
    for size in per:
        print(f"{size:>7} referrals: bureau {per[size][0]:.3f} ms, police {per[size][1]:.3f} ms per round trip")
    print(f"{args.history} against {SMALL}: bureau {result['ratio']['medical_security']:.3f}x, "
          f"police {result['ratio']['public_security']:.3f}x (target: within 1.10x)")


if __name__ == "__main__":
    main()
