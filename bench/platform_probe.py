"""What this machine does to per-call costs, read in the same minutes as a benchmark run.

Two properties of the development machines bear on ``bench_delivery.py --latency``, and
neither is cluebus's code; both change from minute to minute (a KVM guest on a shared host),
so a reading describes the moment it was taken:

- **the cost of the same CPU work**: pure-Python work timed back to back, after idle gaps of
  1 and 20 ms (single calls at a moderate rate wake idle processes), and with every CPU kept
  busy by spinners (the nodes, RabbitMQ and the client share two CPUs at half the maximum).
  Seen on 2026-12-03, minutes apart: 481-830 µs back to back; after 1 ms idle 0.9-1.7x that;
  with every CPU busy 0.7-1.5x.
- **a queue hop's latency**: confirmed, persistent publishes at a fixed rate, published to
  consumed, into a classic and into a quorum queue on the same broker (cluebus's bus queues
  are quorum queues by default, TRANSPORT.QUEUE_TYPE; a round trip has two such hops).

    .venv/bin/python bench/platform_probe.py [--broker amqp://guest:guest@127.0.0.1:5672//] [--rate 80]

Prints one JSON object; the queues it declares are its own and deleted at the end.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from kombu import Connection, Exchange, Queue  # noqa: E402

SPIN = "while True: pass"


def _work() -> None:
    document = {"a": list(range(200)), "b": "x" * 500}
    for _ in range(20):
        json.dumps(document)
        hashlib.sha256(b"y" * 2000).digest()


def work_us(gap_seconds: float, repeats: int) -> float:
    """Median thread CPU time of one unit of work, each after ``gap_seconds`` of sleep."""
    times = []
    for _ in range(repeats):
        if gap_seconds:
            time.sleep(gap_seconds)
        started = time.thread_time()
        _work()
        times.append(time.thread_time() - started)
    times.sort()
    return round(times[len(times) // 2] * 1e6, 1)


def cpu_costs() -> dict:
    result = {"back_to_back_us": work_us(0, 300), "after_1ms_idle_us": work_us(0.001, 200),
              "after_20ms_idle_us": work_us(0.02, 60)}
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.2)  # let them take the CPUs
        result["every_cpu_busy_us"] = work_us(0, 300)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    result["ratio_after_idle"] = round(result["after_1ms_idle_us"] / result["back_to_back_us"], 2)
    result["ratio_every_cpu_busy"] = round(result["every_cpu_busy_us"] / result["back_to_back_us"], 2)
    return result


def hop_ms(broker: str, queue_type: str, rate: float, count: int) -> dict:
    """Confirmed, persistent publishes at ``rate``: p50/p99 from publish to the consumer."""
    name = f"probe-{queue_type}-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, exchange=Exchange(""), routing_key=name, durable=True,
                  queue_arguments={"x-queue-type": queue_type})
    seen: list[float] = []
    done = eventlet.event.Event()
    with Connection(broker) as consuming, Connection(broker, transport_options={"confirm_publish": True}) as publishing:
        queue(consuming.default_channel).declare()
        try:
            def on_message(body, message):
                seen.append((time.perf_counter() - body["t"]) * 1000)
                message.ack()
                if len(seen) == count:
                    done.send()

            consumer = consuming.Consumer(queue, callbacks=[on_message])
            consumer.consume()

            def drain():
                while not done.ready():
                    try:
                        consuming.drain_events(timeout=1)
                    except TimeoutError:
                        pass

            drainer = eventlet.spawn(drain)
            producer = publishing.Producer()
            start = time.perf_counter()
            for index in range(count):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    eventlet.sleep(delay)
                producer.publish({"t": time.perf_counter()}, exchange="", routing_key=name, delivery_mode=2)
            done.wait(timeout=60)
            drainer.wait()
        finally:
            queue(consuming.default_channel).delete()
    seen.sort()
    return {"p50_ms": round(seen[len(seen) // 2], 1), "p99_ms": round(seen[int(len(seen) * 0.99)], 1),
            "messages": len(seen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--rate", type=float, default=80, help="publishes per second for the hop latency")
    parser.add_argument("--count", type=int, default=800)
    args = parser.parse_args()
    result = {"cpu_work": cpu_costs(),
              "hop_classic": hop_ms(args.broker, "classic", args.rate, args.count),
              "hop_quorum": hop_ms(args.broker, "quorum", args.rate, args.count),
              "hop_rate": args.rate}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
