"""``cluebus schemas``: the message contracts as JSON Schema."""

from __future__ import annotations

import argparse

from schemas.jsonschema import export_all


def register(commands) -> None:
    schemas = commands.add_parser("schemas", help="message contracts")
    sub = schemas.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write JSON Schema for the envelope and every body kind")
    export.add_argument("directory")
    export.set_defaults(handler=export_schemas)


def export_schemas(args: argparse.Namespace) -> int:
    written = export_all(args.directory)
    print(f"wrote {len(written)} JSON Schema files to {args.directory}")
    return 0
