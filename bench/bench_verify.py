"""Verifying envelopes vs. merely parsing their JSON: time ratio and peak memory."""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.crypto.keys import AgencyKeyMaterial, Keyring  # noqa: E402
from adapters.crypto.sealing import BoxKey  # noqa: E402
from adapters.crypto.signing import Signer  # noqa: E402
from schemas.routes import RouteTable  # noqa: E402
from services.config import agency_codes, load_config  # noqa: E402
from services.demo import story  # noqa: E402
from services.protocol.compose import Composer  # noqa: E402
from services.protocol.verify import Verifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    now = datetime.now(timezone.utc)
    agencies = agency_codes(load_config(environ={}))
    routes = RouteTable.load().restricted_to(agencies)
    keyring = Keyring()
    materials = {a: AgencyKeyMaterial.generate(a) for a in ("medical_security", "public_security")}
    for material in materials.values():
        for record in material.public_records(now - timedelta(days=1), now + timedelta(days=1)):
            keyring.add(record)
    ms = materials["medical_security"]
    composer = Composer(Signer("medical_security", ms.signing_key_id, ms.signing_seed), routes, keyring,
                        BoxKey("medical_security", ms.box_key_id, ms.box_secret))
    ps = materials["public_security"]
    verifier = Verifier(keyring, routes, agencies, box_key=BoxKey("public_security", ps.box_key_id, ps.box_secret))
    raws = [composer.compose("clue_transfer", "public_security", story.crime_clue(now),
                             referral_id=str(uuid.uuid4())).raw for _ in range(args.messages)]

    def timed(function) -> float:
        start = time.perf_counter()
        for raw in raws:
            function(raw)
        return time.perf_counter() - start

    baseline = min(timed(json.loads) for _ in range(3))
    verified = min(timed(lambda raw: verifier.verify(raw, expected_recipient="public_security")) for _ in range(3))
    tracemalloc.start()
    for raw in raws:
        verifier.verify(raw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(map(len, raws)) / len(raws)
    print(f"{args.messages} envelopes of {size:.0f} bytes")
    print(f"  json.loads (baseline): {baseline / len(raws) * 1e6:8.1f} us/message")
    print(f"  Verifier.verify:       {verified / len(raws) * 1e6:8.1f} us/message")
    print(f"  ratio verify/json.loads: {verified / baseline:.1f}x")
    print(f"  peak memory while verifying the batch one by one: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
