"""``cluebus protocol``: the protocol's test vectors (docs/protocol-vectors.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.protocol.vectors import build_vectors, render_vectors


def register(commands) -> None:
    protocol = commands.add_parser("protocol", help="protocol cluebus/1 test vectors")
    sub = protocol.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    vectors = sub.add_parser("vectors", help="write the deterministic test vectors as JSON")
    vectors.add_argument("--out", metavar="FILE",
                         help="write to FILE (e.g. docs/protocol-vectors.json) instead of stdout")
    vectors.set_defaults(handler=write_vectors)


def write_vectors(args: argparse.Namespace) -> int:
    document = build_vectors()
    text = render_vectors(document)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {len(document['valid'])} valid and {len(document['invalid'])} invalid "
              f"vectors to {path}")
    else:
        sys.stdout.write(text)
    return 0
