"""``cluebus``: one entry point, one sub-module per command group."""

from __future__ import annotations

import argparse
import sys

from adapters.crypto.exceptions import CryptoError
from adapters.storage.migrations import DatabaseBehind, DatabaseUnrecognised
from services.config import ConfigError

from . import (broker_cmd, db_cmd, demo_cmd, evidence_cmd, import_cmd, keys_cmd, node_cmd, office_cmd, protocol_cmd,
               reconcile_cmd, schemas_cmd)
from .errors import CommandError

COMMAND_GROUPS = (keys_cmd, broker_cmd, schemas_cmd, protocol_cmd, demo_cmd, node_cmd, import_cmd, reconcile_cmd,
                  office_cmd, db_cmd, evidence_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluebus",
        description="Signed, schema-checked clue and case transfers between agencies.")
    parser.add_argument("--config", help="configuration YAML (default: $CLUEBUS_CONFIG or the shipped one)")
    parser.add_argument("--utc", action="store_true",
                        help="show times in UTC to the second (default: local time in OFFICE.TIMEZONE, to the minute)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except (CommandError, ConfigError, DatabaseBehind, DatabaseUnrecognised) as exc:
        print(f"cluebus: {exc}", file=sys.stderr)
        return 2
    except CryptoError as exc:
        print(f"cluebus: [{exc.rule}] {exc.detail}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
