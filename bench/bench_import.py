"""`cluebus import` of a generated file of suspicious records into a running pair of nodes (and
the procuratorate, which gets each suspected-crime transfer's copy), against the delivery
benchmark's own rate (bench_delivery.py's `refer_clues` of the same chunk size) measured in the
same run on the same nodes.

    .venv/bin/python bench/bench_import.py --rows 10000 [--database postgresql] [--json]

Times: the import command as a clerk runs it (a process: read, check every row, send, the
report written), and until the last transfer of the file is receipted at the bureau. The
rows are suspected-crime transfers, each with its copy to the procuratorate: two signed
messages a row, where bench_delivery sends one (administrative_violation). See bench/README.md.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from bench.bench_delivery import CLUEBUS, RECEIVER, SENDER, Process, Setup, receipted, send_all  # noqa: E402
from services import settings  # noqa: E402

PROCURATORATE = "procuratorate"
EXAMPLE = ROOT / "docs" / "examples" / "suspicious_records_example.csv"


def write_records(directory: Path, count: int) -> Path:
    """``count`` rows like the shipped example's, each its own record number."""
    attachments = directory / "attachments"
    attachments.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / "docs" / "examples" / "attachments").iterdir():
        (attachments / source.name).write_bytes(source.read_bytes())
    with open(EXAMPLE, encoding="utf-8-sig", newline="") as handle:
        examples = list(csv.DictReader(handle))
    path = directory / f"records-{count}.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, list(examples[0]))
        writer.writeheader()
        for index in range(count):
            row = dict(examples[index % len(examples)])
            row["疑点编号"] = f"YB-2026-B{index:06d}"
            row["涉及金额"] = f"{1000 + index * 7 % 900000:,}.{index % 100:02d}"
            writer.writerow(row)
    return path


def wait_receipted(engine, wanted: int, timeout: float) -> float:
    start = time.perf_counter()
    while receipted(engine) < wanted:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"only {receipted(engine)} of {wanted} receipted after {timeout:.0f} s")
        eventlet.sleep(0.05)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--delivery-messages", type=int, default=3000, help="bench_delivery's transfers, same run")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    setup = Setup(args.database, keep=args.keep, label="bimport")
    nodes: list[Process] = []
    result: dict = {"rows": args.rows, "database": args.database}
    try:
        path = write_records(setup.dir / "import", args.rows)
        result["file_mb"] = round(path.stat().st_size / 2**20, 1)
        for agency in (RECEIVER, PROCURATORATE, SENDER):
            nodes.append(Process(agency, [CLUEBUS, "run", "--agency", agency], setup.env(), setup.dir,
                                 f"{agency} node running"))
        engine = setup.engine(SENDER)
        # The delivery benchmark's rate on these nodes, first (it warms them up too).
        with ClusterRpcProxy({"AMQP_URI": settings.control_uri(setup.config, SENDER)}, timeout=600) as proxy:
            now = datetime.now(timezone.utc)
            rpc = {SENDER: proxy[SENDER]}
            send_all(rpc, 50, 50, now, offset=9_000_000)
            wait_receipted(engine, 50, 120)
            start = time.perf_counter()
            send_all(rpc, args.delivery_messages, 200, now)
            end = wait_receipted(engine, 50 + args.delivery_messages, 600)
            result["delivery_rate"] = round(args.delivery_messages / (end - start), 1)
        before = receipted(engine)

        report = setup.dir / "report.csv"
        start = time.perf_counter()
        done = subprocess.run([CLUEBUS, "import", str(path), "--as", SENDER, "--report", str(report)],
                              env=setup.env(), cwd=ROOT, capture_output=True, text=True)
        imported = time.perf_counter()
        if done.returncode != 0:
            raise RuntimeError(f"import failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
        end = wait_receipted(engine, before + 2 * args.rows, 900)  # each transfer and its copy
        result["summary"] = done.stdout.strip().splitlines()[-1]
        result["import_seconds"] = round(imported - start, 1)
        result["import_rate"] = round(args.rows / (imported - start), 1)
        result["receipted_seconds"] = round(end - start, 1)
        result["receipted_rate"] = round(args.rows / (end - start), 1)
        result["ratio"] = round(result["receipted_rate"] / result["delivery_rate"], 2)

        start = time.perf_counter()  # the same file again: every row "already sent"
        again = subprocess.run([CLUEBUS, "import", str(path), "--as", SENDER, "--report", str(report)],
                               env=setup.env(), cwd=ROOT, capture_output=True, text=True)
        result["rerun_seconds"] = round(time.perf_counter() - start, 1)
        result["rerun_summary"] = again.stdout.strip().splitlines()[-1]
        engine.dispose()
    finally:
        for node in nodes:
            node.stop()
        setup.close()
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"{args.rows} rows ({result['file_mb']} MB CSV) on {args.database}")
    print(f"  import command (read, check, send, report): {result['import_seconds']:7.1f} s  "
          f"{result['import_rate']:7.0f} rows/s")
    print(f"  until every transfer and copy receipted:    {result['receipted_seconds']:7.1f} s  "
          f"{result['receipted_rate']:7.0f} rows/s")
    print(f"  bench_delivery, same nodes, same run:       {result['delivery_rate']:7.0f} transfers/s "
          f"(one message each; ratio {result['ratio']})")
    print(f"  {result['summary']}")
    print(f"  the same file again: {result['rerun_seconds']} s: {result['rerun_summary']}")


if __name__ == "__main__":
    main()
